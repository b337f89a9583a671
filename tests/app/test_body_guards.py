"""The request body against the real server: early refusals reach urllib, stalled bodies time out, and a client
that hangs up is counted as such, never as our error."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.images import JPEG
from tests.app.live_server import Live, closed_by_server, error_code, live_server, read_response

MAX_BODY = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def live(tiny_models_dir: Path) -> Iterator[Live]:
    with live_server(tiny_models_dir, max_body_bytes=MAX_BODY, max_images_per_request=2, body_timeout=0.5) as server:
        yield server


def urllib_post(live: Live, body: bytes, content_type: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{live.port}/v1/predict", data=body, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def multipart(files: list[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        b'--%s\r\nContent-Disposition: form-data; name="file"; filename="%d.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n%s\r\n" % (boundary.encode(), i, data)
        for i, data in enumerate(files)
    ]
    return b"".join(parts) + b"--%s--\r\n" % boundary.encode(), f"multipart/form-data; boundary={boundary}"


def test_urllib_receives_the_413_for_a_body_over_the_limit(live: Live) -> None:
    for size in (MAX_BODY + 1, 2 * MAX_BODY - 1):  # urllib sends it all before it reads
        status, body = urllib_post(live, b"\0" * size, "image/jpeg")
        assert status == 413 and body["error"]["code"] == "payload_too_large"  # type: ignore[index]


def test_urllib_receives_the_400_for_too_many_files(live: Live) -> None:
    body, content_type = multipart([JPEG + b"\0" * 700_000] * 10)  # 10 files > 2: most of it unread when refused
    for _ in range(3):
        status, answer = urllib_post(live, body, content_type)
        assert status == 400 and answer["error"]["code"] == "too_many_images"  # type: ignore[index]


def test_the_server_still_serves_after_refusals(live: Live) -> None:
    status, body = urllib_post(live, JPEG, "image/jpeg")
    assert status == 200 and body["model"] == {"name": "tiny", "version": 1}


def test_a_stalled_body_gets_a_408_and_the_connection_closes(live: Live) -> None:
    with live.connect() as sock:
        sock.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 5000\r\n\r\n"
        )
        sock.sendall(JPEG[:100])  # ... and the rest never comes
        status, headers, body = read_response(sock)
        assert status == 408 and error_code(body) == "request_timeout" and headers["connection"] == "close"
        assert closed_by_server(sock)


def test_a_client_that_hangs_up_is_counted_apart_and_logged_without_a_traceback(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
    for content_type, start in (("image/jpeg", b""), ("multipart/form-data; boundary=b", part)):
        with live.connect() as sock:
            head = (
                f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: 5000\r\n\r\n"
            )
            sock.sendall(head.encode() + start + JPEG[:100])
            time.sleep(0.1)  # the route is reading the body when the client goes
    deadline = time.monotonic() + 10
    while not live.metric_lines('imgclf_errors_total{code="client_disconnected"} 2.0'):
        assert time.monotonic() < deadline, live.metric_lines("imgclf_")
        time.sleep(0.05)
    statuses = live.metric_lines('imgclf_requests_total{method="POST",route="/v1/predict"')
    assert any('status="499"} 2.0' in line for line in statuses), statuses
    assert not any('status="500"' in line for line in statuses), statuses
    assert not live.metric_lines('imgclf_errors_total{code="internal_error"}')
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text
    assert "client went away" in caplog.text


def test_requests_and_urllib_read_the_413_for_a_body_many_times_the_limit(tiny_models_dir: Path) -> None:
    """A 50 MB upload against a 2 MB limit, sent whole before the answer is read (no ``Expect: 100-continue``):
    the refused body is drained for a bounded time, so the client reads the 413 instead of "connection reset"."""
    import requests

    limit = 2 * 1024 * 1024
    body = b"\0" * (50 * 1024 * 1024)
    with live_server(tiny_models_dir, max_body_bytes=limit) as server:
        url = f"http://127.0.0.1:{server.port}/v1/predict"
        response = requests.post(url, data=body, headers={"Content-Type": "image/jpeg"}, timeout=60)
        assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
        status, answer = urllib_post(server, body, "image/jpeg")
        assert status == 413 and answer["error"]["code"] == "payload_too_large"  # type: ignore[index]
        with server.connect(timeout=30) as sock:  # a raw socket client that sends it all, then reads
            sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n")
            sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            status, headers, raw = read_response(sock)
            assert status == 413 and error_code(raw) == "payload_too_large" and headers["connection"] == "close"

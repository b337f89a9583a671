"""Limits on the request head, against the real server: what a reverse proxy would refuse, we refuse too."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.live_server import Live, closed_by_server, error_code, live_server, read_response

LIMITS = {"max_header_line_bytes": 1024, "max_header_bytes": 4096, "max_headers": 20, "header_timeout": 0.5}


@pytest.fixture(scope="module")
def live(tiny_models_dir: Path) -> Iterator[Live]:
    with live_server(tiny_models_dir, **LIMITS) as server:
        yield server


def get(live: Live, head: bytes) -> tuple[int, dict[str, str], bytes]:
    with live.connect() as sock:
        sock.sendall(head)
        return read_response(sock)


def test_an_ordinary_request_within_the_limits_is_served(live: Live) -> None:
    headers = b"".join(b"X-Header-%d: %s\r\n" % (i, b"v" * 900) for i in range(4))  # under every limit
    status, _, _ = get(live, b"GET /health/live HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert status == 200


@pytest.mark.parametrize(
    ("extra_headers", "code"),
    [
        (b"Cookie: " + b"c" * 2000 + b"\r\n", "headers_too_large"),  # one line over 1 KiB
        (b"".join(b"X-%d: 1\r\n" % i for i in range(30)), "too_many_headers"),  # 30 lines > 20
        (b"".join(b"X-%d: %s\r\n" % (i, b"v" * 900) for i in range(6)), "headers_too_large"),  # 5.4 KiB > 4 KiB
    ],
    ids=["long line", "too many", "too much in total"],
)
def test_heads_over_a_limit_get_a_431_in_our_shape(live: Live, extra_headers: bytes, code: str) -> None:
    status, headers, body = get(live, b"GET /health/live HTTP/1.1\r\nHost: x\r\n" + extra_headers + b"\r\n")
    assert status == 431 and error_code(body) == code
    assert headers["connection"] == "close" and headers["content-type"] == "application/json"


def test_a_long_url_gets_a_414(live: Live) -> None:
    status, _, body = get(live, b"GET /health/live?q=" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 414 and error_code(body) == "uri_too_long"


def test_a_never_ending_header_is_cut_off_and_answered(live: Live) -> None:
    with live.connect() as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        with pytest.raises(OSError):  # the server stops reading after the lingering close
            for _ in range(1000):  # up to 16 MiB, far beyond the 4 KiB cap
                sock.sendall(b"a" * 16384)
        status, _, body = read_response(sock)
    assert status == 431 and error_code(body) == "headers_too_large"


def test_a_slow_head_gets_a_408_and_the_connection_closes(live: Live) -> None:
    with live.connect() as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")  # ... and the rest never comes
        status, _, body = read_response(sock)
        assert status == 408 and error_code(body) == "request_timeout"
        assert closed_by_server(sock)


def test_a_connection_that_sends_nothing_is_closed_quietly(live: Live) -> None:
    with live.connect() as sock:
        sock.settimeout(10)
        assert sock.recv(1024) == b""  # closed without an answer: there was no request to answer


def test_the_head_time_out_counts_from_the_first_byte_of_each_request(live: Live) -> None:
    with live.connect() as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200
        time.sleep(0.8)  # idle longer than the head time-out, within the keep-alive time-out
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200


def test_invalid_http_gets_a_400_in_our_shape(live: Live) -> None:
    status, _, body = get(live, b"GET /health/live HTTP/1.1\r\nHost x\r\n\r\n")  # no colon
    assert status == 400 and error_code(body) == "bad_request"


def v2_message(body: bytes) -> str:
    """The Open Inference Protocol's error document is ``{"error": "<message>"}`` and nothing else."""
    document = json.loads(body)
    assert list(document) == ["error"] and isinstance(document["error"], str), document
    message: str = document["error"]
    return message


@pytest.mark.parametrize(
    ("head", "status", "words"),
    [
        (b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nCookie: " + b"c" * 2000 + b"\r\n\r\n", 431, "over 1,024"),
        (b"GET /v2/models/tiny?q=" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "URL is over"),
        (b"GET /v2 HTTP/1.1\r\nHost x\r\n\r\n", 400, "not valid HTTP"),
    ],
    ids=["431", "414", "400"],
)
def test_refusals_of_the_http_layer_under_v2_come_in_the_protocols_shape(
    live: Live, head: bytes, status: int, words: str
) -> None:
    got, headers, body = get(live, head)
    assert got == status and words in v2_message(body)
    assert headers["content-type"] == "application/json"


def test_a_slow_v2_head_gets_a_408_in_the_protocols_shape(live: Live) -> None:
    with live.connect() as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
        status, _, body = read_response(sock)
    assert status == 408 and "did not arrive" in v2_message(body)


def test_v1_paths_that_merely_start_with_v2_keep_the_service_shape(live: Live) -> None:
    status, _, body = get(live, b"GET /v2x?q=" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 414 and error_code(body) == "uri_too_long"

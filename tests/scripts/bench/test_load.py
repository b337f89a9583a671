"""The load generators: what they report must match what the server saw (counts, not speeds)."""

from __future__ import annotations

import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scripts.bench.load import PythonClient, Request, Wrk, parse_wrk_output, raw_request
from tests.scripts.recording_server import Recorder, port_of

WRK_STDOUT = """Running 10s test @ http://127.0.0.1:41234/v1/predict
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   124.10ms   30.02ms 301.55ms   70.11%
  1288 requests in 10.00s, 1.02MB read
Requests/sec:    128.76
Transfer/sec:    104.36KB
BENCH_JSON {"requests": 1288, "duration_us": 10003117, "non2xx": 3, "socket_errors": 1, "timeouts": 2, \
"p50_us": 124100, "p90_us": 172700, "p99_us": 218600, "max_us": 301550}
"""


def test_wrk_output_is_read_from_our_scripts_line() -> None:
    load = parse_wrk_output(WRK_STDOUT)

    assert (load.requests, load.non2xx, load.socket_errors) == (1288, 3, 3)  # timeouts count as socket errors
    assert (load.p50_ms, load.p90_ms, load.p99_ms) == (124.1, 172.7, 218.6)
    assert load.rate == pytest.approx(1288 / 10.003117)


def test_wrk_output_without_our_line_says_so() -> None:
    with pytest.raises(ValueError, match="no BENCH_JSON line"):
        parse_wrk_output("Running 10s test @ http://127.0.0.1:1/\n  0 requests in 10.00s\n")


def test_raw_request_is_one_http_request_with_its_body() -> None:
    wire = raw_request(Request("/v1/predict", b"\xff\xd8jpeg", "image/jpeg"), 8000)

    assert wire == (
        b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: 6\r\n\r\n\xff\xd8jpeg"
    )
    assert b"Content-Type" not in raw_request(Request("/health/live", method="GET"), 8000)


def test_python_client_counts_answers_and_failures(server: ThreadingHTTPServer) -> None:
    generate = PythonClient()
    ok = generate(port_of(server), Request("/ok", b"image bytes", "image/jpeg"), clients=2, seconds=0.3)
    failing = generate(port_of(server), Request("/fail", b"image bytes", "image/jpeg"), clients=2, seconds=0.3)

    assert ok.requests > 0
    assert (ok.non2xx, ok.socket_errors) == (0, 0)
    assert failing.requests > 0
    assert failing.non2xx == failing.requests
    assert len(Recorder.seen) == ok.requests + failing.requests
    assert set(Recorder.seen) == {
        ("POST", "/ok", "image/jpeg", b"image bytes"),
        ("POST", "/fail", "image/jpeg", b"image bytes"),
    }


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
def test_wrk_sends_the_request_and_counts_non_2xx(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    load = Wrk(tmp_path)(port_of(server), Request("/fail", b"\xff\xd8 a JPEG", "image/jpeg"), clients=2, seconds=1)

    assert load.requests > 0
    assert load.non2xx == load.requests
    assert set(Recorder.seen) == {("POST", "/fail", "image/jpeg", b"\xff\xd8 a JPEG")}


ROTATING = Request("/ok", content_type="image/jpeg", rotate=(b"photo one", b"photo two", b"photo three"))


def test_python_client_sends_every_body_in_turn(server: ThreadingHTTPServer) -> None:
    load = PythonClient()(port_of(server), ROTATING, clients=1, seconds=0.3)

    assert load.requests >= 3
    assert [body for *_, body in Recorder.seen[:3]] == [b"photo one", b"photo two", b"photo three"]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
def test_wrk_sends_every_body_in_turn(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    load = Wrk(tmp_path)(port_of(server), ROTATING, clients=1, seconds=1)

    assert load.requests >= 3 and load.non2xx == 0
    assert {body for *_, body in Recorder.seen[:3]} == set(ROTATING.rotate)  # wrk may start the turn anywhere
    assert {len(body) for *_, body in Recorder.seen} == {9, 11}  # each sent with its own Content-Length


WITH_HEADER = Request("/ok", b"{}binary", "application/octet-stream", headers=(("X-Extra", "2"),))


def test_raw_request_carries_the_extra_headers() -> None:
    wire = raw_request(WITH_HEADER, 8000)

    assert wire.startswith(b"POST /ok HTTP/1.1\r\n") and wire.endswith(b"\r\n\r\n{}binary")
    assert b"\r\nX-Extra: 2\r\n" in wire


def test_python_client_sends_the_extra_headers(server: ThreadingHTTPServer) -> None:
    load = PythonClient()(port_of(server), WITH_HEADER, clients=1, seconds=0.2)

    assert load.requests > 0 and Recorder.extra == {"2"}


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
def test_wrk_sends_the_extra_headers(server: ThreadingHTTPServer, tmp_path: Path) -> None:
    load = Wrk(tmp_path)(port_of(server), WITH_HEADER, clients=1, seconds=1)

    assert load.requests > 0 and Recorder.extra == {"2"}
    assert set(Recorder.seen) == {("POST", "/ok", "application/octet-stream", b"{}binary")}


class BinaryV2Answer(BaseHTTPRequestHandler):
    """Answers as /v2 does with binary outputs: an Inference-Header-Content-Length header before Content-Length."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        answer = b'{"outputs": []}' + b"\x18\x00\x00\x000.9:282:tiger cat"
        self.send_response(200)
        self.send_header("Inference-Header-Content-Length", "15")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def test_python_client_reads_the_whole_body_of_a_binary_v2_answer() -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BinaryV2Answer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        load = PythonClient()(port_of(httpd), Request("/v2/models/m/infer", b"{}", "application/json"), 1, 0.3)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert load.requests > 1  # several answers on one keep-alive connection, each read to its end
    assert (load.non2xx, load.socket_errors) == (0, 0)

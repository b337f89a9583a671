"""The real service, ``python -m app``, as a subprocess on a free port: start it, read its CPU time and its own
Prometheus numbers, stop it."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scripts.bench import ROOT
from scripts.bench.load import Request

READY_TIMEOUT_S = 120
_METRIC = re.compile(r"^(imgclf_[a-z_]+?)(?:\{[^}]*\})? ([0-9.e+-]+)$")
BATCHER_METRICS = (
    "imgclf_batch_size_sum",
    "imgclf_batch_size_count",
    "imgclf_queue_wait_seconds_sum",
    "imgclf_queue_wait_seconds_count",
    "imgclf_inference_seconds_sum",
    "imgclf_inference_seconds_count",
    "imgclf_images_total",
)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    startup_s: float  # process start to /health/ready 200
    log: Path

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        return http_get(self.port, path, timeout)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def batcher_metrics(self) -> dict[str, float]:
        """Sums and counts of the batcher's histograms, from ``/metrics`` (labels summed over)."""
        values = dict.fromkeys(BATCHER_METRICS, 0.0)
        for line in self.get("/metrics")[1].decode().splitlines():
            match = _METRIC.match(line)
            if match and match.group(1) in values:
                values[match.group(1)] += float(match.group(2))
        return values

    def wait_until_idle(self, timeout: float = 60.0) -> None:
        """Wait until the service has answered every request the load generator abandoned when it stopped (wrk
        does not wait for the requests in flight at the end of its run); they would otherwise eat into the next
        measurement."""
        deadline = time.perf_counter() + timeout
        previous = -1.0
        while time.perf_counter() < deadline:
            handled = self.batcher_metrics()["imgclf_images_total"]
            if handled == previous:
                return
            previous = handled
            time.sleep(0.5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@contextlib.contextmanager
def serve(models_dir: Path, model: str, extra_env: dict[str, str], log_dir: Path, label: str) -> Iterator[Server]:
    """The service serving ``model`` until the block ends; its output goes to ``log_dir/server-<label>.log``."""
    port = free_port()
    env = dict(os.environ)  # IMGCLF_* settings in the environment apply to the service as to the in-process part
    env.update(IMGCLF_MODELS_DIR=str(models_dir), IMGCLF_DEFAULT_MODEL=model, IMGCLF_PORT=str(port))
    env.update(extra_env)
    log = log_dir / f"server-{label}.log"
    with log.open("wb") as sink:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env, stdout=sink, stderr=sink)
        try:
            wait_ready(process, port, log)
            yield Server(process, port, time.perf_counter() - started, log)
        finally:
            stop(process, grace=15)


def wait_ready(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Return once the service answers ``/health/ready`` with 200; ``SystemExit`` naming ``log`` if it exits or is
    not ready within ``READY_TIMEOUT_S``. Polls every 5 ms: the start-up time is one of the figures."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}; see {log}")
        with contextlib.suppress(OSError):
            if http_get(port, "/health/ready", timeout=1.0)[0] == 200:
                return
        if time.monotonic() > deadline:
            raise SystemExit(f"the server was not ready after {READY_TIMEOUT_S} s; see {log}")
        time.sleep(0.005)


def stop(process: subprocess.Popen[bytes], grace: float) -> None:
    """Ctrl-C (uvicorn's graceful shutdown), then kill after ``grace`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def first_requests_ms(server: Server, request: Request, count: int = 30) -> list[float]:
    """Sequential request latencies on one keep-alive connection, the very first request included."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Content-Type": request.content_type} if request.content_type else {}
    headers.update(request.headers)
    times = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            connection.request(request.method, request.path, body=request.body, headers=headers)
            response = connection.getresponse()
            response.read()
            times.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise SystemExit(f"the service answered {response.status} to the benchmark request")
    finally:
        connection.close()
    return times

"""Settings reach the service however it is started: ``make run`` keeps the environment's, and several worker
processes get the command line's and enforce the same HTTP limits."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.app.live_server import error_code, read_response

ROOT = Path(__file__).resolve().parents[2]


def make_run_command(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IMGCLF_") and k not in ("MODELS_DIR", "PORT")}
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "run"], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_keeps_the_environments_settings() -> None:
    command = make_run_command(IMGCLF_MODELS_DIR="/srv/models", IMGCLF_PORT="9000", IMGCLF_DEFAULT_MODEL="")
    assert "IMGCLF_MODELS_DIR=/srv/models " in command and "--port 9000" in command
    assert "IMGCLF_DEFAULT_MODEL= " in command  # empty means "pick one": kept, not replaced by the Makefile's
    assert "IMGCLF_MODELS_DIR=models " in make_run_command()  # the Makefile's default when nothing is set


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
def test_models_dir_on_the_command_line_reaches_every_worker(tiny_models_dir: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGCLF_")}
    env.update(
        IMGCLF_WORKERS="2",
        IMGCLF_PORT=str(port),
        IMGCLF_DEFAULT_MODEL="",
        IMGCLF_WATCH_INTERVAL="0",
        IMGCLF_WARMUP="false",
        IMGCLF_INTRA_OP_THREADS="1",
        IMGCLF_MAX_HEADERS="10",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "--models-dir", str(tiny_models_dir)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        models = wait_for_models(port, process)
        assert [m["name"] for m in models["models"]] == ["tiny"]  # type: ignore[index]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            headers = b"".join(b"X-%d: 1\r\n" % i for i in range(20))
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
            status, _, body = read_response(sock)
        assert status == 431 and error_code(body) == "too_many_headers"  # the workers' protocol has the limits
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_models(port: int, process: subprocess.Popen[bytes]) -> dict[str, object]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        with contextlib.suppress(OSError), contextlib.closing(connection):
            connection.request("GET", "/v1/models")
            response = connection.getresponse()
            if response.status == 200:
                body: dict[str, object] = json.loads(response.read())
                if body["models"]:
                    return body
        time.sleep(0.1)
    raise AssertionError("the service did not list any model within 120 s")

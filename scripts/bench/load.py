"""Closed-loop HTTP load: N clients each send the same request again as soon as the answer is in (or, with
``Request.rotate``, the next of a list of bodies: many different photos).

wrk (with a Lua script that counts non-2xx answers) when it is installed, else a small asyncio client; both take
any ``Request``, so a new scenario (another path, body or content type) needs no new load code.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from scripts.bench.machine import tool_version


@dataclass(frozen=True)
class Request:
    """The one request every client sends, again and again."""

    path: str
    body: bytes = b""
    content_type: str = ""
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()  # more headers, e.g. the v2 protocol's Inference-Header-Content-Length
    rotate: tuple[bytes, ...] = ()  # bodies each client sends in turn instead of ``body`` (e.g. many photos)

    @property
    def bodies(self) -> tuple[bytes, ...]:
        return self.rotate or (self.body,)

    def header_lines(self) -> str:
        """``headers`` as HTTP header lines, each ending in CRLF."""
        return "".join(f"{name}: {value}\r\n" for name, value in self.headers)


@dataclass(frozen=True)
class Load:
    """What the load generator saw over one measured interval."""

    requests: int  # answered, whatever the status
    seconds: float
    non2xx: int
    socket_errors: int  # connect, read and write errors and timeouts
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


class LoadGenerator(Protocol):
    description: str  # for the report, e.g. "wrk 4.1.0 (Lua script)"

    def __call__(self, port: int, request: Request, clients: int, seconds: float) -> Load: ...


WRK_SCRIPT = r"""
-- Send the benchmark request (method, body files and content type from the environment); count non-2xx answers.
-- With several body files (one path per line), each connection sends them in turn.
wrk.method = os.getenv("BENCH_METHOD")
local bodies = {}
for path in os.getenv("BENCH_BODIES"):gmatch("[^\n]+") do
  local f = assert(io.open(path, "rb"))
  table.insert(bodies, f:read("*a"))
  f:close()
end
wrk.body = bodies[1]
local content_type = os.getenv("BENCH_CONTENT_TYPE")
if content_type ~= "" then
  wrk.headers["Content-Type"] = content_type
end
for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\r\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then
    wrk.headers[name] = value
  end
end

if #bodies > 1 then
  local turn = 0
  function request()
    turn = turn % #bodies + 1
    return wrk.format(nil, nil, nil, bodies[turn])
  end
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  non2xx = 0
end
function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end
function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non2xx")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, "timeouts": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, bad, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def parse_wrk_output(stdout: str) -> Load:
    """The ``BENCH_JSON`` line our Lua script's ``done`` writes, as a ``Load``."""
    line = next((line for line in stdout.splitlines() if line.startswith("BENCH_JSON ")), None)
    if line is None:
        raise ValueError(f"wrk printed no BENCH_JSON line (was it run with our Lua script?):\n{stdout}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    return Load(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        non2xx=raw["non2xx"],
        socket_errors=raw["socket_errors"] + raw["timeouts"],
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
    )


class Wrk:
    """wrk with ``WRK_SCRIPT``; the script and each request body are files in ``work``."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.script = work / "bench_request.lua"
        self.script.write_text(WRK_SCRIPT)
        self.description = f"wrk {tool_version('wrk') or ''} (Lua script)"

    def body_files(self, request: Request) -> list[Path]:
        paths = []
        for body in request.bodies:
            path = self.work / f"body-{hashlib.sha256(body).hexdigest()[:16]}"
            if not path.exists():
                path.write_bytes(body)
            paths.append(path)
        return paths

    def __call__(self, port: int, request: Request, clients: int, seconds: float) -> Load:
        command = [
            "wrk",
            f"-t{min(clients, 2)}",
            f"-c{clients}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(self.script),
            f"http://127.0.0.1:{port}{request.path}",
        ]
        env = dict(
            os.environ,
            BENCH_METHOD=request.method,
            BENCH_BODIES="\n".join(map(str, self.body_files(request))),
            BENCH_CONTENT_TYPE=request.content_type,
            BENCH_HEADERS=request.header_lines(),
        )
        output = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
        return parse_wrk_output(output)


def raw_request(request: Request, port: int, body: bytes | None = None) -> bytes:
    """The request (with ``body``, default its own) as bytes on the wire (HTTP/1.1, keep-alive)."""
    body = request.body if body is None else body
    content_type = f"Content-Type: {request.content_type}\r\n" if request.content_type else ""
    head = (
        f"{request.method} {request.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{content_type}"
        f"{request.header_lines()}Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def raw_requests(request: Request, port: int) -> list[bytes]:
    """One wire request per body the clients send in turn."""
    return [raw_request(request, port, body) for body in request.bodies]


class PythonClient:
    """An asyncio client, one keep-alive connection per simulated client: for machines without wrk."""

    description = "asyncio Python client"

    def __call__(self, port: int, request: Request, clients: int, seconds: float) -> Load:
        return asyncio.run(_python_load(port, raw_requests(request, port), clients, seconds))


async def _python_load(port: int, wires: list[bytes], clients: int, seconds: float) -> Load:
    latencies: list[float] = []
    counts = {"non2xx": 0, "errors": 0}
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        turn = 0
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(wires[turn % len(wires)])
                turn += 1
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = re.search(rb"(?im)^content-length: *(\d+)", head)  # not Inference-Header-Content-Length
                await reader.readexactly(int(length.group(1)) if length else 0)
                latencies.append(time.perf_counter() - started)
                counts["non2xx"] += not 200 <= status < 300
        except (OSError, asyncio.IncompleteReadError):
            counts["errors"] += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    quantiles = np.percentile(np.asarray(latencies) * 1000, [50, 90, 99]) if latencies else [0.0] * 3
    return Load(len(latencies), elapsed, counts["non2xx"], counts["errors"], *map(float, quantiles))


def load_generator(choice: Literal["auto", "wrk", "python"], work: Path) -> LoadGenerator:
    """wrk if asked for (or, for "auto", if installed), else the Python client."""
    installed = shutil.which("wrk") is not None
    if choice == "wrk" and not installed:
        raise SystemExit("wrk is not installed (apt-get install wrk), or use --client python")
    if choice == "python" or not installed:
        return PythonClient()
    return Wrk(work)

"""Goodput under a closed loop: which answers were 200s that came within a client's deadline.

wrk runs one thread per connection, so each thread's Lua state sees its one connection's requests and answers in
turn and can time each answer (LuaJIT's ffi reads the monotonic clock); the per-answer Python client
(``scripts.soak.client``) is the fallback without wrk, and costs far more CPU at hundreds of connections, which on
a small machine the service then lacks.

wrk runs at the lowest CPU priority (``nice -n 19``): it takes the CPU the service leaves idle rather than a share of
it, as clients on other machines would. On the 2-core machine of BENCHMARKS.md its 512 threads took 0.14 cores
(0.03 at 64 clients), and left at normal priority the same overload measured 81% of the peak instead of 92%; a
starved client can only time its answers late, which counts against the service, never for it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from scripts.bench.load import Request
from scripts.soak.client import closed_loop

GENERATOR_NICENESS = 19
"""The load generator's priority: the lowest, so the service under test keeps the machine's CPU (see above)."""

GOODPUT_SCRIPT = r"""
-- One connection per thread: request() and response() alternate, so each answer can be timed.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } soak_timespec;
int clock_gettime(int clk_id, soak_timespec *tp);
]]
local clock = ffi.new("soak_timespec")
local function now()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) * 1e-9
end
local f = assert(io.open(os.getenv("SOAK_BODY"), "rb"))
local body = f:read("*a")
f:close()
local deadline = tonumber(os.getenv("SOAK_DEADLINE"))
local headers = {}
if os.getenv("SOAK_CONTENT_TYPE") ~= "" then headers["Content-Type"] = os.getenv("SOAK_CONTENT_TYPE") end
local method, path = os.getenv("SOAK_METHOD"), os.getenv("SOAK_PATH")

local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  sent_at = 0
  ok, ok_in_time, ok_seconds, ok_max, refused, refused_seconds, other = 0, 0, 0, 0, 0, 0, 0
end
function request()
  sent_at = now()
  return wrk.format(method, path, headers, body)
end
function response(status, headers, body)
  local took = now() - sent_at
  if status == 200 then
    ok = ok + 1
    ok_seconds = ok_seconds + took
    if took > ok_max then ok_max = took end
    if took <= deadline then ok_in_time = ok_in_time + 1 end
  elseif status == 503 then
    refused = refused + 1
    refused_seconds = refused_seconds + took
  else
    other = other + 1
  end
end
function done(summary, latency, requests)
  local t = {ok = 0, ok_in_time = 0, ok_seconds = 0, ok_max = 0, refused = 0, refused_seconds = 0, other = 0}
  for _, thread in ipairs(threads) do
    for key, _ in pairs(t) do
      local value = thread:get(key)
      if key == "ok_max" then t[key] = math.max(t[key], value) else t[key] = t[key] + value end
    end
  end
  local e = summary.errors
  io.write(string.format(
    'SOAK_JSON {"answers": %d, "seconds": %f, "ok": %d, "ok_in_time": %d, "ok_seconds": %f, "ok_max": %f, '
      .. '"refused": %d, "refused_seconds": %f, "other": %d, "errors": %d, "p50_ms": %f, "p99_ms": %f}\n',
    summary.requests, summary.duration / 1e6, t.ok, t.ok_in_time, t.ok_seconds, t.ok_max, t.refused,
    t.refused_seconds, t.other, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


@dataclass(frozen=True)
class Goodput:
    answers: int
    seconds: float
    ok: int
    ok_in_time: int
    ok_mean_ms: float
    ok_max_ms: float
    refused: int  # 503
    refused_mean_ms: float
    other: int
    errors: int  # connection errors, client time-outs
    p50_ms: float  # every answer
    p99_ms: float

    @property
    def goodput(self) -> float:
        return self.ok_in_time / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, float | int]:
        return {**asdict(self), "goodput": self.goodput, "answers_per_s": self.answers / self.seconds}


def _mean_ms(total_seconds: float, count: int) -> float:
    return total_seconds / count * 1000 if count else float("nan")


def with_wrk(port: int, request: Request, clients: int, seconds: float, deadline: float, work: Path) -> Goodput:
    script = work / "soak_goodput.lua"
    script.write_text(GOODPUT_SCRIPT)
    body = work / "soak_body"
    body.write_bytes(request.body)
    env = dict(
        os.environ,
        SOAK_BODY=str(body),
        SOAK_DEADLINE=str(deadline),
        SOAK_CONTENT_TYPE=request.content_type,
        SOAK_METHOD=request.method,
        SOAK_PATH=request.path,
    )
    command = [
        *("nice", "-n", str(GENERATOR_NICENESS)),
        *("wrk", f"-t{clients}", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "60s"),
        *("-s", str(script), f"http://127.0.0.1:{port}{request.path}"),
    ]
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    line = next((x for x in out.splitlines() if x.startswith("SOAK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no SOAK_JSON line:\n{out}")
    raw = json.loads(line.removeprefix("SOAK_JSON "))
    return Goodput(
        answers=raw["answers"],
        seconds=raw["seconds"],
        ok=raw["ok"],
        ok_in_time=raw["ok_in_time"],
        ok_mean_ms=_mean_ms(raw["ok_seconds"], raw["ok"]),
        ok_max_ms=raw["ok_max"] * 1000,
        refused=raw["refused"],
        refused_mean_ms=_mean_ms(raw["refused_seconds"], raw["refused"]),
        other=raw["other"],
        errors=raw["errors"],
        p50_ms=raw["p50_ms"],
        p99_ms=raw["p99_ms"],
    )


def with_python(port: int, request: Request, clients: int, seconds: float, deadline: float) -> Goodput:
    records = closed_loop(port, request, clients, seconds=seconds)
    ok = [a.seconds for a in records.answers if a.status == 200]
    refused = [a.seconds for a in records.answers if a.status == 503]
    return Goodput(
        answers=len(records.answers),
        seconds=records.seconds,
        ok=len(ok),
        ok_in_time=records.count(200, deadline),
        ok_mean_ms=_mean_ms(sum(ok), len(ok)),
        ok_max_ms=max(ok, default=0.0) * 1000,
        refused=len(refused),
        refused_mean_ms=_mean_ms(sum(refused), len(refused)),
        other=sum(1 for a in records.answers if a.status not in (0, 200, 503)),
        errors=records.count(0),
        p50_ms=records.percentile_ms(50, status=None),
        p99_ms=records.percentile_ms(99, status=None),
    )


def measure(port: int, request: Request, clients: int, seconds: float, deadline: float, work: Path) -> Goodput:
    if shutil.which("wrk"):
        return with_wrk(port, request, clients, seconds, deadline, work)
    return with_python(port, request, clients, seconds, deadline)


def generator_name() -> str:
    return (
        f"wrk at nice {GENERATOR_NICENESS} (one thread per connection, a Lua script timing each answer; the lowest "
        "priority, so that it uses the CPU the service leaves idle, as clients on other machines would)"
        if shutil.which("wrk")
        else ("a Python asyncio client (wrk is not installed)")
    )

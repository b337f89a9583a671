"""Slow and hostile clients: heads trickled a byte a second, bodies that stall, a head that never ends.

For each: the server's memory while it holds them, when it closes them (the head and body time-outs), and what
they were answered. The service runs with its default limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

from app.config import Settings
from scripts.bench.machine import load_average
from scripts.soak.context import Context, rss_mib

HOLD_SAMPLE_SECONDS = 3.0
BODY_DECLARED = 1024 * 1024
BODY_SENT = 64 * 1024
ENDLESS_BYTES = 64 * 1024 * 1024


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    with contextlib.suppress(ConnectionError):
        return await reader.read()
    return b""


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


async def trickled_head(port: int, limit: float) -> tuple[float, int]:
    """Send a head a byte a second; return when the server closed it and its status (0: none)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.perf_counter()
    closed = asyncio.ensure_future(_until_closed(reader))
    writer.write(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    while not closed.done() and time.perf_counter() - started < limit:
        with contextlib.suppress(ConnectionError):
            writer.write(b"a")
        await asyncio.wait([closed], timeout=1.0)
    writer.close()
    answer = closed.result() if closed.done() else b""
    return time.perf_counter() - started, _status(answer)


async def stalled_body(port: int, limit: float) -> tuple[float, int]:
    """Send a head and part of the body, then nothing; return when the server closed it and its status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.perf_counter()
    head = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
    writer.write(head % BODY_DECLARED + b"\xff" * BODY_SENT)
    try:
        answer = await asyncio.wait_for(_until_closed(reader), limit)
    except TimeoutError:
        answer = b""
    writer.close()
    return time.perf_counter() - started, _status(answer)


async def _crowd(
    port: int, pid: int, count: int, client: Callable[[int, float], Awaitable[tuple[float, int]]], limit: float
) -> dict[str, Any]:
    before = rss_mib(pid)
    tasks = [asyncio.ensure_future(client(port, limit)) for _ in range(count)]
    await asyncio.sleep(HOLD_SAMPLE_SECONDS)
    held = rss_mib(pid)
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    done = [o for o in outcomes if isinstance(o, tuple)]
    closed = sorted(seconds for seconds, _ in done if seconds < limit)
    statuses: dict[int, int] = {}
    for _, status in done:
        statuses[status] = statuses.get(status, 0) + 1
    return {
        "count": count,
        "rss_before_mib": before,
        "rss_held_mib": held,
        "closed": len(closed),
        "closed_after_s": [closed[0], closed[len(closed) // 2], closed[-1]] if closed else [],
        "statuses": dict(sorted(statuses.items())),
        "failed": count - len(done),
    }


async def endless_head(port: int, pid: int) -> dict[str, Any]:
    """One client sends a header of 64 MiB as fast as it can."""
    before = rss_mib(pid)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    closed = asyncio.ensure_future(_until_closed(reader))
    writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Endless: ")
    sent, peak = 0, before
    try:
        while sent < ENDLESS_BYTES and not closed.done():
            writer.write(b"a" * 65536)
            await writer.drain()
            sent += 65536
            peak = max(peak, rss_mib(pid))
    except ConnectionError:
        pass
    answer = await asyncio.wait_for(closed, 10)
    writer.close()
    return {"sent_mib": sent / 2**20, "rss_before_mib": before, "rss_peak_mib": peak, "status": _status(answer)}


def measure(ctx: Context) -> dict[str, Any]:
    ctx.fresh_models()
    defaults = Settings()
    count = ctx.sizes.slow_clients
    result: dict[str, Any] = {
        "header_timeout": defaults.header_timeout,
        "body_timeout": defaults.body_timeout,
        "loads": [load_average()],
    }
    with ctx.service("slow") as server:
        pid, port = server.process.pid, server.port
        result["heads"] = uvloop.run(_crowd(port, pid, count, trickled_head, defaults.header_timeout * 3))
        print(f"  trickled heads: {result['heads']}", flush=True)
        result["bodies"] = uvloop.run(_crowd(port, pid, count, stalled_body, defaults.body_timeout * 3))
        print(f"  stalled bodies: {result['bodies']}", flush=True)
        result["endless"] = uvloop.run(endless_head(port, pid))
        print(f"  endless head: {result['endless']}", flush=True)
        result["rss_after_mib"] = rss_mib(pid)
        result["still_serving"] = server.get("/health/ready")[0]
    result["loads"].append(load_average())
    return result


def _crowd_line(what: str, crowd: dict[str, Any], timeout: float) -> str:
    closed = crowd["closed_after_s"]
    when = f"after {closed[0]:.1f} / {closed[1]:.1f} / {closed[2]:.1f} s (first / median / last)" if closed else ""
    held = crowd["rss_held_mib"] - crowd["rss_before_mib"]
    return (
        f"- **{crowd['count']} {what}: {held:+.1f} MiB held, {crowd['closed']} of {crowd['count']} closed by the "
        f"server** {when} (time-out {timeout:g} s); answers {crowd['statuses']} (0: closed without an answer)."
    )


def _answer(status: int) -> str:
    return f"answered {status}" if status else "answer lost to the reset of a client still sending"


def render(result: dict[str, Any]) -> list[str]:
    endless = result["endless"]
    endless_peak = endless["rss_peak_mib"] - endless["rss_before_mib"]
    return [
        "### Slow and hostile clients",
        "",
        f"Default limits (`IMGCLF_HEADER_TIMEOUT={result['header_timeout']:g}`, "
        f"`IMGCLF_BODY_TIMEOUT={result['body_timeout']:g}`); memory is the server's resident set "
        f"{HOLD_SAMPLE_SECONDS:g} s after the clients connected, against before. Load average "
        f"{result['loads'][0]:.1f} -> {result['loads'][1]:.1f}.",
        "",
        _crowd_line("connections trickling a head (a byte a second)", result["heads"], result["header_timeout"]),
        _crowd_line(
            f"connections stalling a {BODY_DECLARED // 2**20} MiB body after {BODY_SENT // 1024} KiB",
            result["bodies"],
            result["body_timeout"],
        ),
        f"- **One never-ending header: {_answer(endless['status'])}, peak {endless_peak:+.1f} MiB**"
        f" while the client pushed {endless['sent_mib']:.1f} MiB before the server stopped reading (it would go on to "
        f"{ENDLESS_BYTES // 2**20} MiB).",
        f"- Afterwards the service answered `/health/ready` with {result['still_serving']}; resident memory "
        f"{result['rss_after_mib']:.0f} MiB.",
        "",
    ]

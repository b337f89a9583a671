"""A closed-loop HTTP client that records every answer: when it was sent, how long it took, its status.

wrk reports one latency distribution for all answers, so it cannot say which of them came in time (a 503 in 1 ms
and a 200 in 5 s look alike); goodput needs per-answer records. Each simulated client keeps one keep-alive
connection, sends the next request as soon as the previous answer is in (as wrk does: no back-off, Retry-After
ignored), and reconnects when the server closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import uvloop

from scripts.bench.load import Request, raw_request

_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")
_CLOSE = re.compile(rb"(?i)\r\nconnection: *close")


@dataclass(frozen=True)
class Answer:
    sent: float  # perf_counter seconds
    seconds: float
    status: int  # 0: no answer (connection error or client time-out)


@dataclass
class Records:
    answers: list[Answer] = field(default_factory=list)
    started: float = 0.0
    stopped: float = 0.0

    @property
    def seconds(self) -> float:
        return self.stopped - self.started

    def count(self, status: int | None = None, within: float | None = None) -> int:
        return sum(
            1
            for a in self.answers
            if (status is None or a.status == status) and (within is None or a.seconds <= within)
        )

    def rate(self, status: int | None = None, within: float | None = None) -> float:
        return self.count(status, within) / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float, status: int | None = 200) -> float:
        values = [a.seconds for a in self.answers if status is None or a.status == status]
        return float(np.percentile(values, q) * 1000) if values else float("nan")

    def statuses(self) -> dict[int, int]:
        found: dict[int, int] = {}
        for answer in self.answers:
            found[answer.status] = found.get(answer.status, 0) + 1
        return dict(sorted(found.items()))


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = _LENGTH.search(head)
    await reader.readexactly(int(length.group(1)) if length else 0)
    return int(head.split(b" ", 2)[1]), bool(_CLOSE.search(head))


async def _one_client(port: int, wire: bytes, keep_going: Callable[[], bool], records: Records, timeout: float) -> None:
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    while keep_going():
        sent = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            writer.write(wire)
            status, close = await asyncio.wait_for(_read_answer(reader), timeout)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            status, close = 0, True
        records.answers.append(Answer(sent, time.perf_counter() - sent, status))
        if close and writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            writer = reader = None
        if status == 0:
            await asyncio.sleep(0.01)  # a refused connection: do not spin
    if writer is not None:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _closed_loop(
    port: int, request: Request, clients: int, seconds: float | None, total: int | None, timeout: float
) -> Records:
    wire = raw_request(request, port)
    records = Records()
    deadline = time.perf_counter() + (seconds if seconds is not None else 1e9)
    left = [total if total is not None else 1 << 62]  # requests still to send, all clients together

    def keep_going() -> bool:
        if time.perf_counter() >= deadline or left[0] <= 0:
            return False
        left[0] -= 1
        return True

    records.started = time.perf_counter()
    await asyncio.gather(*(_one_client(port, wire, keep_going, records, timeout) for _ in range(clients)))
    records.stopped = time.perf_counter()
    return records


def closed_loop(
    port: int,
    request: Request,
    clients: int,
    *,
    seconds: float | None = None,
    total: int | None = None,
    timeout: float = 30.0,
) -> Records:
    """``clients`` clients sending ``request`` for ``seconds`` or until ``total`` answers are in; each answer
    recorded. Connections stay open until the end, then all close at once (as when wrk stops)."""
    if seconds is None and total is None:
        raise ValueError("give seconds or total")
    return uvloop.run(_closed_loop(port, request, clients, seconds, total, timeout))


def one_request(port: int, request: Request, timeout: float = 30.0) -> Answer:
    """One request on a new connection."""
    return closed_loop(port, request, 1, total=1, timeout=timeout).answers[0]

"""Admission: how many requests a model serves at once, how many may wait, and for how long.

A model serves a limited number of requests at a time; more wait in a bounded waiting room (``max_waiting``), and a
request that cannot start within ``timeout`` seconds is refused with ``OverloadedError`` (503 and ``Retry-After``)
instead of being answered after everyone gave up. Waiting happens before decoding, so a refused request has cost no
decode and no inference.

How many are served at once adapts to the model's speed on this machine: while requests wait, the time each one
held its slot is measured over short windows, and the limit is scaled by the target (a quarter of the time-out)
over that time (Little's law: requests in service = throughput x time in service), growing at most twofold a
window. A request let in is thus answered within about a quarter of the time-out once it starts, however slow the
machine has become (another tenant, a throttled container); the limit stays between ``min_slots`` (one request per
decode thread and per inference worker) and ``max_slots`` (full batches on every worker).

Waiting requests are let in oldest first, until the oldest has waited three quarters of the time-out: the queue
is then standing (the model is overloaded) and the newest is let in first, so the requests that are served are answered
in normal time and the old ones, which would be late anyway, are refused at their deadline (adaptive LIFO, as in
"Fail at Scale", ACM Queue 2015). Refusing late rather than at once also paces clients that retry without backing
off: each refusal costs the server a little, and a refusal at once would be followed by the next request at once.
So a request is answered within about the time-out, or refused when it runs out.

Everything runs on the event loop; nothing here needs a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import ClassVar

WINDOW_SECONDS = 0.5
"""How often the limit is reconsidered while requests wait."""
IN_SERVICE_SHARE = 0.25
"""The share of the time-out a request let in should hold its slot for (decoding, batching, inference)."""
MAX_GROWTH = 2.0
"""The most the limit grows after one window whose requests were served faster than that."""
STANDING_SHARE = 0.75
"""A queue whose oldest request has waited this share of the time-out is standing: the newest is let in first. Not
earlier: under a moderate overload the oldest still make it in time, and turning to the newest would only make them
miss it."""


class OverloadedError(RuntimeError):
    """The model cannot take this request in time; the client should retry after ``retry_after`` seconds."""

    code: ClassVar[str] = "overloaded"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Admission:
    """At most ``limit`` requests in service (adapting between ``min_slots`` and ``max_slots``), at most
    ``max_waiting`` waiting, none waiting over ``timeout`` s."""

    def __init__(
        self,
        max_slots: int,
        max_waiting: int,
        timeout: float,
        *,
        min_slots: int = 1,
        name: str = "model",
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not 1 <= min_slots <= max_slots:
            raise ValueError("need 1 <= min_slots <= max_slots")
        self.min_slots = min_slots
        self.max_slots = max_slots
        self.max_waiting = max_waiting
        self.timeout = timeout
        self.name = name
        self.limit = max_slots
        self._clock = clock  # the event loop's time unless given (tests)
        self._in_service = 0
        self._waiters: deque[tuple[asyncio.Future[None], float]] = deque()
        self._waiting = 0  # live waiters: the deque may still hold some that gave up
        self._window_start = -1.0
        self._window_held = 0.0  # seconds the slots released in this window were held, in all
        self._window_done = 0
        self._window_saturated = False

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def in_service(self) -> int:
        return self._in_service

    def retry_after(self, timeout: float | None = None) -> int:
        """Seconds a refused client should wait before retrying: about one queue time-out."""
        limit = self.timeout if timeout is None or math.isinf(timeout) else timeout
        return max(1, math.ceil(limit))

    @contextlib.asynccontextmanager
    async def slot(self, timeout: float | None = None) -> AsyncIterator[None]:
        """Hold one slot for the block; ``OverloadedError`` when none comes free in time (``timeout`` overrides
        the model's)."""
        await self.acquire(timeout)
        started = self._now()
        try:
            yield
        finally:
            self.release(self._now() - started)

    async def acquire(self, timeout: float | None = None) -> None:
        if self._in_service < self.limit and self._waiting == 0:
            self._in_service += 1
            return
        limit = self.timeout if timeout is None else timeout
        if self._waiting >= self.max_waiting or limit <= 0:
            raise self._refusal(limit, f"{self._waiting} requests are already waiting")
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((granted, self._now()))
        self._waiting += 1
        self._window_saturated = True
        try:
            async with asyncio.timeout(None if math.isinf(limit) else limit):
                await granted
        except BaseException as exc:
            if granted.done() and not granted.cancelled():
                if isinstance(exc, TimeoutError):
                    return  # the slot came just as the time ran out: keep it
                self.release()  # cancelled after the slot was handed over: pass it on
                raise
            granted.cancel()
            self._waiting -= 1
            if isinstance(exc, TimeoutError):
                raise self._refusal(limit, f"no slot came free within {limit:g} s") from None
            raise

    def release(self, held: float | None = None) -> None:
        """Free a slot held for ``held`` seconds (None: not measured) and let in as many waiting requests as the
        limit allows."""
        self._in_service -= 1
        now = self._now()
        if held is not None:
            self._adapt(now, held)
        while self._in_service < self.limit:
            waiter = self._next_waiter(now)
            if waiter is None:
                return
            self._waiting -= 1
            self._in_service += 1
            waiter.set_result(None)

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _adapt(self, now: float, held: float) -> None:
        """Over each window in which requests waited, compare the time slots were held with the target."""
        if self._window_start < 0:
            self._window_start = now
        self._window_held += held
        self._window_done += 1
        if now - self._window_start < WINDOW_SECONDS:
            return
        if self._window_saturated or self._waiting:
            ratio = self.timeout * IN_SERVICE_SHARE / max(self._window_held / self._window_done, 1e-9)
            if ratio < 1:  # Little's law: the limit at which requests would hold their slots for the target
                wanted = math.floor(self.limit * ratio)
            else:  # faster than the target: grow, at most twofold a window (the machine may be idle, or not)
                wanted = max(self.limit + 1, math.floor(self.limit * min(ratio, MAX_GROWTH)))
            self.limit = max(self.min_slots, min(self.max_slots, wanted))
        self._window_start, self._window_held, self._window_done, self._window_saturated = now, 0.0, 0, False

    def _next_waiter(self, now: float) -> asyncio.Future[None] | None:
        waiters = self._waiters
        while waiters and waiters[0][0].done():  # gave up (time-out, cancelled)
            waiters.popleft()
        while waiters and waiters[-1][0].done():
            waiters.pop()
        if not waiters:
            return None
        standing = now - waiters[0][1] > self.timeout * STANDING_SHARE
        return (waiters.pop() if standing else waiters.popleft())[0]

    def _refusal(self, timeout: float, why: str) -> OverloadedError:
        return OverloadedError(
            f"{self.name} is overloaded ({why}); retry in a moment (see the Retry-After header)",
            self.retry_after(timeout),
        )

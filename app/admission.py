"""Admission: how many requests a model serves at once, how many may wait, and for how long.

A model serves ``slots`` requests at a time (enough to keep every decode thread busy and every inference worker on
full batches); more wait in a bounded waiting room, and a request that cannot start within ``timeout`` seconds is
refused with ``OverloadedError`` (503 and ``Retry-After``) instead of being answered after everyone gave up. Waiting
happens before decoding, so a refused request has cost no decode and no inference.

Waiting requests are let in oldest first, until the oldest has waited more than half the time-out: the queue is
then standing (the model is overloaded) and the newest is let in first, so the requests that are served are
answered in normal time and the old ones, which would be late anyway, are refused (adaptive LIFO, as in "Fail at
Scale", ACM Queue 2015). Refusing late rather than at once also paces clients that retry without backing off.

Everything runs on the event loop; nothing here needs a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncIterator
from typing import ClassVar


class OverloadedError(RuntimeError):
    """The model cannot take this request in time; the client should retry after ``retry_after`` seconds."""

    code: ClassVar[str] = "overloaded"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Admission:
    """At most ``slots`` requests in service, at most ``max_waiting`` waiting, none waiting over ``timeout`` s."""

    def __init__(self, slots: int, max_waiting: int, timeout: float, name: str = "model") -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = slots
        self.max_waiting = max_waiting
        self.timeout = timeout
        self.name = name
        self._free = slots
        self._waiters: deque[tuple[asyncio.Future[None], float]] = deque()
        self._waiting = 0  # live waiters: the deque may still hold some that gave up

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def in_service(self) -> int:
        return self.slots - self._free

    def retry_after(self, timeout: float | None = None) -> int:
        """Seconds a refused client should wait before retrying: about one queue time-out."""
        return max(1, math.ceil(self.timeout if timeout is None else timeout))

    @contextlib.asynccontextmanager
    async def slot(self, timeout: float | None = None) -> AsyncIterator[None]:
        """Hold one slot for the block; ``OverloadedError`` when none comes free in time (``timeout`` overrides
        the model's)."""
        await self.acquire(timeout)
        try:
            yield
        finally:
            self.release()

    async def acquire(self, timeout: float | None = None) -> None:
        if self._free > 0 and self._waiting == 0:
            self._free -= 1
            return
        limit = self.timeout if timeout is None else timeout
        if self._waiting >= self.max_waiting or limit <= 0:
            raise self._refusal(limit, f"{self._waiting} requests are already waiting")
        loop = asyncio.get_running_loop()
        granted: asyncio.Future[None] = loop.create_future()
        self._waiters.append((granted, loop.time()))
        self._waiting += 1
        try:
            async with asyncio.timeout(limit):
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

    def release(self) -> None:
        """Hand the slot to a waiting request, or free it."""
        waiter = self._next_waiter()
        if waiter is None:
            self._free += 1
            return
        self._waiting -= 1
        waiter.set_result(None)

    def _next_waiter(self) -> asyncio.Future[None] | None:
        waiters = self._waiters
        while waiters and waiters[0][0].done():  # gave up (time-out, cancelled)
            waiters.popleft()
        while waiters and waiters[-1][0].done():
            waiters.pop()
        if not waiters:
            return None
        oldest_since = waiters[0][1]
        standing = asyncio.get_running_loop().time() - oldest_since > self.timeout / 2
        return (waiters.pop() if standing else waiters.popleft())[0]

    def _refusal(self, timeout: float, why: str) -> OverloadedError:
        return OverloadedError(
            f"{self.name} is overloaded ({why}); retry in a moment (see the Retry-After header)",
            self.retry_after(timeout),
        )

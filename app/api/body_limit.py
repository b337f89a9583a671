"""The request body's guards, enforced before any route reads it: a size cap and a read time-out.

- Over ``max_bytes`` by its Content-Length: 413 at once; over it while streaming (no Content-Length): 413 then.
- A body that stalls for ``body_timeout`` seconds between two reads: 408, and the connection is closed.
- Any answer given before the body was read to its end (413, 400 for too many files, 415, 404, ...): clients that
  send their whole body before they read the answer (Python's urllib and requests, many SDKs) would see
  "connection reset" if the server closed on an unread body. So the answer is written first, then the rest of the
  body is read and thrown away for a bounded time, as nginx's lingering close does (``DRAIN_SECONDS`` in all, a
  stall of ``body_timeout`` ends it; ``drain_bytes``, far above the limit, caps the bytes), and the connection is
  closed after it. A 50 MB upload against a 2 MB limit reads its 413. A client that sent ``Expect: 100-continue``
  has not sent its body: no drain.

The request line and headers have their own limits and time-out in the HTTP protocol (``app.api.server``).
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import domain_error_response
from app.api.protocols import protocol_of
from app.api.uploads import PayloadTooLargeError, RequestTimeoutError

DRAIN_SECONDS = 5.0
"""The longest a refused body is drained before the connection closes (the bound that matters: time)."""
DRAIN_LIMITS = 16
"""A refused body is drained up to this many times the limit ..."""
MIN_DRAIN_BYTES = 256 * 1024 * 1024
"""... and at least this much, so that a common upload's 413 is read whatever the limit."""
CLOSE = (b"connection", b"close")


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with a 413 and stalled ones with a 408, in the protocol's error shape."""

    def __init__(self, app: ASGIApp, max_bytes: int, body_timeout: float = 20.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout
        self.drain_bytes = max(DRAIN_LIMITS * max_bytes, MIN_DRAIN_BYTES)

    def too_large(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(f"the request body is over the limit of {self.max_bytes:,} bytes; send less")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        length = int(declared) if declared is not None and declared.isdigit() else None
        no_body = length == 0 or (length is None and b"transfer-encoding" not in headers)
        guard = _BodyGuard(self, receive, send, no_body, headers.get(b"expect", b"").lower() == b"100-continue")
        if length is not None and length > self.max_bytes:
            answer = domain_error_response(self.too_large(), protocol=protocol_of(scope["path"]))
            await answer(scope, guard.receive, guard.send)
            return
        await self.app(scope, guard.receive, guard.send)

    async def drain(self, receive: Receive) -> bool:
        """Read and discard the rest of the body, up to ``drain_bytes`` within ``DRAIN_SECONDS``; True if it all
        came (the connection could then be reused)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_SECONDS
        budget = self.drain_bytes
        while budget > 0:
            wait = min(deadline - loop.time(), self.body_timeout)
            if wait <= 0:
                return False
            try:
                async with asyncio.timeout(wait):
                    message = await receive()
            except TimeoutError:
                return False
            if message["type"] != "http.request":
                return False  # the client went away
            budget -= len(message.get("body", b""))
            if not message.get("more_body", False):
                return True
        return False


class _BodyGuard:
    """One request's view of its body: counted and timed; an answer given before the body was read to its end is
    followed by a bounded drain and ``Connection: close``."""

    __slots__ = ("_limits", "_receive", "_send", "_received", "_complete", "_close", "_sent_later")

    def __init__(
        self, limits: BodyLimitMiddleware, receive: Receive, send: Send, no_body: bool, expects_continue: bool
    ) -> None:
        self._limits = limits
        self._receive = receive
        self._send = send
        self._received = 0
        self._complete = no_body  # nothing more to read (later receives wait for a disconnect: no time-out)
        self._close = False
        self._sent_later = expects_continue  # the body comes only once it is asked for (100 Continue)

    async def receive(self) -> Message:
        if self._complete:
            return await self._receive()
        self._sent_later = False  # the server answers "100 Continue" to the first read
        limits = self._limits
        try:
            async with asyncio.timeout(limits.body_timeout):
                message = await self._receive()
        except TimeoutError:
            self._complete = self._close = True
            raise RequestTimeoutError(
                f"the request body stalled for {limits.body_timeout:g} s; send it without pauses"
            ) from None
        if message["type"] != "http.request":
            self._complete = True
            return message
        self._received += len(message.get("body", b""))
        self._complete = not message.get("more_body", False)
        if self._received > limits.max_bytes:
            raise limits.too_large()  # the answer drains the rest
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._close = self._close or not self._complete
            if self._close:
                message = {**message, "headers": [*message.get("headers", []), CLOSE]}
        elif not self._complete and not self._sent_later and not message.get("more_body", False):
            await self._send({**message, "more_body": True})
            self._complete = True
            await self._limits.drain(self._receive)
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await self._send(message)

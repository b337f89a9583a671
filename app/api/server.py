"""uvicorn's httptools protocol with what a reverse proxy would enforce on the request head.

uvicorn's httptools parser has no cap on header size or count, and no time-out for a client that sends its head
slowly (only the keep-alive time-out between requests), so one client could hold memory without bound and a few
hundred slow ones could hold connections for ever. This subclass adds, per connection:

- a cap on the request line and on each header line (414 / 431), on the number of header lines (431) and on the
  bytes of the whole head (431): the bytes are counted as they arrive, so a never-ending header is cut off at the
  cap instead of being buffered;
- a time-out for the head, counted from the request's first byte (or from connecting, for the first request):
  408 if part of a request came, a quiet close if nothing did;
- invalid HTTP answered with a 400, all in the error shape of the request's protocol (as far as its target
  came: ``{"error": "..."}`` under ``/v2``).

After such an answer the connection is half-closed and what the client still sends is read and thrown away for a
moment (a "lingering close"), so that a client still writing its request reads the answer instead of a reset.
The body's limits (size, read time-out) are the ASGI app's (``app.api.body_limit``).

It keeps httptools' speed: the checks are a few integer comparisons per chunk and per header, and a timer only for
a head that does not arrive in one read (measured in docs/performance.md).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from app.api.protocols import error_body, protocol_of
from app.config import Settings

logger = logging.getLogger(__name__)

PROTOCOL_PATH = "app.api.server:LimitedHttpToolsProtocol"
"""What uvicorn's worker processes import (``http=``); it reads its limits from the environment."""
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024


@dataclass(frozen=True)
class HttpLimits:
    max_line_bytes: int
    max_header_bytes: int
    max_headers: int
    header_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(
            max_line_bytes=settings.max_header_line_bytes,
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            header_timeout=settings.header_timeout,
        )


@functools.cache
def limits_from_environment() -> HttpLimits:
    return HttpLimits.from_settings(Settings())


class _RefusalError(Exception):
    """Raised from a parser callback to stop parsing a request that breaks a limit."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with limits on the request head; pass it to uvicorn as ``http=``."""

    limits: ClassVar[HttpLimits | None] = None
    """None: read them from the ``IMGCLF_*`` environment (once per process), as uvicorn's workers do."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = self.limits or limits_from_environment()
        self._in_head = True  # between requests, or reading a request's line and headers
        self._head_bytes = 0  # as they arrive: bounds a head still coming
        self._header_count = 0
        self._header_size = 0  # as parsed: a head that came at once
        self._head_started = 0.0  # loop time of the current request's first byte (or of connecting)
        self._head_begun = False  # the parser is inside a request's head
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._discard_left = 0

    # Connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_started = self.loop.time()
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._discard(len(data))
            return
        if self._in_head:
            self._head_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            refusal = exc.__context__
            if isinstance(refusal, _RefusalError):
                self._refuse(refusal.status, refusal.code, refusal.message)
            else:
                self._refuse(400, "bad_request", f"the request is not valid HTTP/1.1 ({exc})")
            return
        if self._in_head and (self._head_bytes or self._head_begun):  # a head still coming: it has until its time-out
            if self._head_bytes > self._limits.max_header_bytes:
                self._refuse(431, "headers_too_large", self._head_too_large())
            elif self._head_timer is None:
                self._arm_head_timer()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "bad_request", f"the request is not valid HTTP/1.1 ({msg})")

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = self._head_begun = True
        self._header_count = 0
        self._header_size = 0
        if self._head_timer is None:  # a head that comes whole in one read needs no timer at all
            self._head_started = self.loop.time()

    def on_header(self, name: bytes, value: bytes) -> None:
        limits = self._limits
        self._header_count += 1
        size = len(name) + len(value)
        self._header_size += size + 4  # ": " and CRLF
        if (
            size > limits.max_line_bytes
            or self._header_count > limits.max_headers
            or self._header_size + len(self.url) > limits.max_header_bytes
        ):
            self._header_refusal(name, size)
        super().on_header(name, value)

    def _header_refusal(self, name: bytes, size: int) -> None:
        limits = self._limits
        if self._header_count > limits.max_headers:
            raise _RefusalError(
                431, "too_many_headers", f"the request has over {limits.max_headers} headers; send fewer"
            )
        if size > limits.max_line_bytes:
            shown = name[:64].decode("latin-1")
            raise _RefusalError(
                431, "headers_too_large", f"the header {shown!r} is over {limits.max_line_bytes:,} bytes; shorten it"
            )
        if self._header_size + len(self.url) > limits.max_header_bytes:
            raise _RefusalError(431, "headers_too_large", self._head_too_large())

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self._in_head = self._head_begun = False
        self._head_bytes = 0
        if len(self.url) > self._limits.max_line_bytes:  # a URL still coming is bounded by the head's byte count
            raise _RefusalError(
                414, "uri_too_long", f"the URL is over {self._limits.max_line_bytes:,} bytes; shorten it"
            )
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # the next request's bytes count from here

    # Refusing

    def _head_too_large(self) -> str:
        return f"the request line and headers are over {self._limits.max_header_bytes:,} bytes; send less"

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_at(self._head_started + self._limits.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # a pipelined head trickles behind a response: close after that one
            return
        if self._head_bytes == 0:
            self.transport.close()  # connected and sent nothing: nobody to answer
            return
        timeout = self._limits.header_timeout
        self._refuse(408, "request_timeout", f"the request headers did not arrive within {timeout:g} s")

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``status`` (unless a response is under way), then half-close and throw away what still comes."""
        self._refused = True
        self._cancel_head_timer()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        logger.info("refused a request from %s: %d %s", client, status, message)
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # another request's answer is being written: no room for ours
            return
        body = json.dumps(error_body(code, message, protocol_of(self.url))).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.flow.resume_reading()
        self._discard_left = LINGER_BYTES
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _discard(self, size: int) -> None:
        self._discard_left -= size
        if self._discard_left <= 0:
            self.transport.close()


def protocol_class(limits: HttpLimits) -> type[LimitedHttpToolsProtocol]:
    """The protocol with ``limits`` built in, for a server in this process (one worker, tests)."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})

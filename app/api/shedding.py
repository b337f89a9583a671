"""Load shedding at the edge: a request to a prediction, features or v2 inference route waits for its model's slot
before FastAPI handles it at all.

Under overload most requests are refused, and clients that resend at once (wrk, impatient scripts) make refusals
as frequent as the waiting room is large. A refusal that went through FastAPI (routing, dependencies, reading the
form) cost 600-700 us of CPU, one refused here 40-50 us (measured in-process), so refusing here keeps the CPU for
the requests that are served. The body is read first (under the body guards), so that a slow upload never holds a
slot, then replayed to the route; a client that left while it waited is dropped before any work. The route's
pipeline sees that the slot is held (``app.engine.admission``) and does not wait again. Requests whose model cannot be
found, or whose query is invalid, go on to the route, which answers them properly.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import CLIENT_CLOSED_REQUEST, domain_error_response, error_response
from app.api.uploads import DisconnectWatch, UploadError
from app.engine.admission import OverloadedError
from app.engine.inference import ClientDisconnectedError
from app.engine.model import LoadedModel
from app.engine.registry import ModelLookupError

logger = logging.getLogger(__name__)

INFERENCE_PATHS = (
    re.compile(r"^/v1/(?:models/(?P<name>[^/]+)/)?(?P<kind>predict|features)$"),
    re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/(?P<kind>infer)$"),
)


def _inference_route(scope: Scope) -> re.Match[str] | None:
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    return next((m for pattern in INFERENCE_PATHS if (m := pattern.match(scope["path"]))), None)


def _route_template(match: re.Match[str]) -> str:
    """The path the router would label the request with."""
    if match["kind"] == "infer":
        return "/v2/models/{name}/versions/{version}/infer" if match["version"] else "/v2/models/{name}/infer"
    return f"/v1/models/{{name}}/{match['kind']}" if match["name"] else match.string


@dataclass(frozen=True)
class RouteTemplate:
    """What the metrics label a request with (``scope["route"].path``) when it is answered before routing."""

    path: str


class SheddingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _inference_route(scope)
        model = self._model(scope, match) if match else None
        if match is None or model is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = RouteTemplate(_route_template(match))
        try:
            body = await read_body(receive)
        except UploadError as error:  # too large, stalled
            await self._answer(scope, send, error)
            return
        except ClientDisconnectedError as gone:
            await self._answer(scope, send, gone)
            return
        watch = DisconnectWatch(receive)
        replay = _Replay(body, watch)
        del body  # the replay holds it until the route has read it, and no longer
        admitted = False
        try:
            async with model.admission.slot():
                if await watch():
                    raise ClientDisconnectedError("the client went away while its request waited")
                admitted = True
                await self.app(scope, replay.receive, send)
        except (OverloadedError, ClientDisconnectedError) as refused:
            if admitted:  # the route's own (its handlers answered it already)
                raise
            await self._answer(scope, send, refused)
        finally:
            watch.close()

    @staticmethod
    def _model(scope: Scope, match: re.Match[str]) -> LoadedModel | None:
        services = getattr(scope["app"].state, "services", None) if "app" in scope else None
        if services is None:
            return None
        if match["kind"] == "infer":
            version = match["version"]
        else:
            version = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("version", [None])[-1]
        if version is not None and not version.isdigit():
            return None  # the route answers 422 (400 on /v2)
        try:
            model: LoadedModel = services.registry.get(match["name"], int(version) if version else None)
        except ModelLookupError:
            return None  # the route answers 404 or 503
        return model

    @staticmethod
    async def _answer(scope: Scope, send: Send, error: UploadError | OverloadedError | ClientDisconnectedError) -> None:
        metrics = scope["app"].state.metrics
        metrics.errors.labels(error.code).inc()
        if isinstance(error, ClientDisconnectedError):
            logger.info("client went away during %s %s (%s)", scope["method"], scope["path"], error)
            response = error_response(CLIENT_CLOSED_REQUEST, error.code, "the client closed the connection")
        else:
            response = domain_error_response(error)
        await response(scope, _nothing_to_receive, send)


async def read_body(receive: Receive) -> bytes:
    """The whole body; ``ClientDisconnectedError`` if the client leaves first (the body guards raise theirs)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnectedError("the client went away while sending its body")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class _Replay:
    """The body, read already, as the route's ``receive``; then the disconnect the watch is waiting for."""

    def __init__(self, body: bytes, watch: DisconnectWatch) -> None:
        self._body: bytes | None = body
        self._watch = watch

    async def receive(self) -> Message:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        return await self._watch.wait()


async def _nothing_to_receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}

"""Load shedding at the edge: a request to a prediction, features or v2 inference route waits for its model's slot
before FastAPI handles it at all.

Under overload most requests are refused, and clients that resend at once (wrk, impatient scripts) make refusals
as frequent as the waiting room is large. A refusal that went through FastAPI (routing, dependencies, reading the
form) cost 600-700 us of CPU, one refused here 40-50 us (measured in-process), so refusing here keeps the CPU for
the requests that are served. The body is read first (under the body guards), so that a slow upload never holds a
slot, then replayed to the route; a client that left while it waited is dropped before any work.

The shed routes are the app's own (Starlette's route matching, so their paths are spelled once, in the routers).
The model is resolved here, once; the route receives it, with the slot held for it, as ``request.state.admitted``
(``admitted(request)``) and runs it without resolving or waiting again. Requests whose model cannot be found, or
whose version is not a number, go on to the route, which answers them properly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import CLIENT_CLOSED_REQUEST, domain_error_response, error_response
from app.api.protocols import protocol_of
from app.api.uploads import DisconnectWatch, UploadError
from app.engine.admission import OverloadedError
from app.engine.inference import Admitted, ClientDisconnectedError
from app.engine.model import LoadedModel
from app.engine.registry import ModelLookupError

logger = logging.getLogger(__name__)

ADMITTED = "admitted"
"""The key of ``request.state`` that holds a shed route's ``Admitted`` request."""


def admitted(request: Request) -> Admitted | None:
    """The model this request was resolved to, with one of its slots held for it; None if it was not let in here
    (its route then resolves the model itself and reports what is wrong)."""
    let_in: Admitted | None = getattr(request.state, ADMITTED, None)
    return let_in


class SheddingMiddleware:
    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        """``routes``: the app's routes whose requests wait for their model's slot here."""
        self.app = app
        self.routes = tuple(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = self._match(scope)
        model = self._model(scope, *matched) if matched else None
        if matched is None or model is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = matched[0]  # what the metrics label a request answered here with, as the router would
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
        let_in = False
        try:
            async with model.admission.slot():
                if await watch():
                    raise ClientDisconnectedError("the client went away while its request waited")
                let_in = True
                scope.setdefault("state", {})[ADMITTED] = Admitted(model)
                await self.app(scope, replay.receive, send)
        except (OverloadedError, ClientDisconnectedError) as refused:
            if let_in:  # the route's own (its handlers answered it already)
                raise
            await self._answer(scope, send, refused)
        finally:
            watch.close()

    def _match(self, scope: Scope) -> tuple[BaseRoute, dict[str, Any]] | None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        for route in self.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return route, child.get("path_params", {})
        return None

    @staticmethod
    def _model(scope: Scope, route: BaseRoute, path_params: dict[str, Any]) -> LoadedModel | None:
        services = getattr(scope["app"].state, "services", None) if "app" in scope else None
        if services is None:
            return None
        if "version" in path_params:  # /v2/models/{name}/versions/{version}/infer
            version = path_params["version"]
        else:  # /v1: ?version=
            version = QueryParams(scope.get("query_string", b"")).get("version")
        if version is not None and not (version.isascii() and version.isdigit()):
            return None  # the route answers 422 (404 on /v2)
        try:
            model: LoadedModel = services.registry.get(path_params.get("name"), int(version) if version else None)
        except ModelLookupError:
            return None  # the route answers 404 or 503
        return model

    @staticmethod
    async def _answer(scope: Scope, send: Send, error: UploadError | OverloadedError | ClientDisconnectedError) -> None:
        metrics = scope["app"].state.metrics
        metrics.errors.labels(error.code).inc()
        protocol = protocol_of(scope["path"])
        if isinstance(error, ClientDisconnectedError):
            logger.info("client went away during %s %s (%s)", scope["method"], scope["path"], error)
            response = error_response(
                CLIENT_CLOSED_REQUEST, error.code, "the client closed the connection", protocol=protocol
            )
        else:
            response = domain_error_response(error, protocol=protocol)
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

"""Errors under ``/v2`` in the Open Inference Protocol's shape, ``{"error": "<message>"}``, status unchanged.

Every error is first answered by ``app.api.errors`` (which also counts it in the metrics) in the service's shape,
``{"error": {"code", "message"}}``, wherever it comes from: a route, the body limit, an unknown path, an unexpected
exception. This middleware, outside all of them, rewrites such a body on the way out for paths under ``/v2``;
other bodies (``{"ready": false}``) and every success pass through untouched, as does everything outside ``/v2``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/v2"


def is_v2(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def protocol_error_body(body: bytes) -> bytes | None:
    """The protocol's error document for one of the service's error bodies; None for any other body."""
    try:
        document: Any = json.loads(body)
    except ValueError:
        return None
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return None
    return json.dumps({"error": error["message"]}, separators=(",", ":")).encode()


class V2ErrorShapeMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_v2(scope["path"]):
            await self.app(scope, receive, send)
            return
        held: Message | None = None  # an error's response start, sent once its body is rewritten
        chunks: list[bytes] = []

        async def reshape(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held = message
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            original = b"".join(chunks)
            body = protocol_error_body(original)
            headers = held["headers"]
            if body is None:
                body = original
            else:
                skip = (b"content-length", b"content-type")
                headers = [(k, v) for k, v in headers if k.lower() not in skip]
                headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({**held, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, reshape)

"""The two protocol families the HTTP face speaks, and the error document of each.

``v1`` is the service's own API: ``{"error": {"code": "...", "message": "..."}}``. ``v2`` is the Open Inference
Protocol (everything under ``/v2``): ``{"error": "<message>"}``. Whoever makes an error (an exception handler, a
middleware, the HTTP protocol refusing a request head) knows the request's path and builds the right document
here, so no answer is rewritten on its way out. Free of FastAPI and Starlette: the HTTP protocol imports it.
"""

from __future__ import annotations

from typing import Any, Literal

Protocol = Literal["v1", "v2"]

V2_PREFIX = "/v2"


def protocol_of(target: str | bytes) -> Protocol:
    """The family of a request path (or raw request target, query and all, even one cut short)."""
    path = target.decode("latin-1") if isinstance(target, bytes) else target
    path = path.split("?", 1)[0]
    return "v2" if path == V2_PREFIX or path.startswith(V2_PREFIX + "/") else "v1"


def error_body(code: str, message: str, protocol: Protocol = "v1") -> dict[str, Any]:
    if protocol == "v2":
        return {"error": message}
    return {"error": {"code": code, "message": message}}

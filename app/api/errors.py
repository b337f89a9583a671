"""One error source for every failure: the right status, in the request's protocol's shape
(``{"error": {"code": "...", "message": "..."}}``, or ``{"error": "..."}`` under ``/v2``: ``app.api.protocols``).

The domain modules raise errors that know nothing of HTTP, each with a stable ``code`` (decoding: ``ImageError``,
reading a request: ``UploadError``, finding a model: ``ModelLookupError``, running one: ``InferenceError``, a
v2 request: ``ProtocolError``); this module is the one place that gives each its status. Handlers turn those, the
routes' own ``APIError``, Starlette's HTTP errors and FastAPI's validation errors into that shape; anything
unexpected becomes a logged 500 with the same shape, never a traceback to the client. Each handler knows the
request's path, so an answer under ``/v2`` is made in the Open Inference Protocol's shape in the first place.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from app.api.oip.errors import ImageInputTooLargeError, ProtocolError, TooManyInputsError, UnsupportedEncodingError
from app.api.protocols import Protocol, error_body, protocol_of
from app.api.uploads import (
    PayloadTooLargeError,
    RequestTimeoutError,
    UnsupportedMediaTypeError,
    UploadError,
)
from app.engine.admission import OverloadedError
from app.engine.inference import (
    ClientDisconnectedError,
    InferenceError,
    InferenceFailedError,
    InvalidInputError,
    ModelReloadingError,
)
from app.engine.registry import ModelLookupError, ModelNotFoundError, NotReadyError, VersionNotFoundError
from modelspec.decode import (
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    InvalidImageError,
    UnsupportedImageFormatError,
)

logger = logging.getLogger(__name__)


class APIError(Exception):
    """An error of the HTTP layer itself (keys, parameters) the client can act on. ``code`` is stable and
    machine-readable; ``message`` says how to fix it."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


DomainError = ImageError | UploadError | ModelLookupError | InferenceError | ProtocolError | OverloadedError
DOMAIN_ERRORS = (ImageError, UploadError, ModelLookupError, InferenceError, ProtocolError, OverloadedError)

CLIENT_CLOSED_REQUEST = 499
"""The status nginx logs for a client that closed the connection first; nobody receives it, the metrics count it."""

# The most specific class in an error's ancestry decides; each family's base has a status of its own.
_DOMAIN_STATUS: dict[type[Exception], int] = {
    ImageError: 400,
    EmptyImageError: 400,
    InvalidImageError: 400,
    UnsupportedImageFormatError: 415,
    ImageTooLargeError: 413,
    UploadError: 400,
    UnsupportedMediaTypeError: 415,
    PayloadTooLargeError: 413,
    RequestTimeoutError: 408,
    ModelLookupError: 404,
    ModelNotFoundError: 404,
    VersionNotFoundError: 404,
    NotReadyError: 503,
    InferenceError: 500,
    InferenceFailedError: 500,
    InvalidInputError: 400,
    ModelReloadingError: 503,
    ProtocolError: 400,  # the Open Inference Protocol (/v2): its limits answer 413, as the body limit does
    TooManyInputsError: 413,
    ImageInputTooLargeError: 413,
    UnsupportedEncodingError: 415,
    OverloadedError: 503,
}


def http_status(error: DomainError) -> int:
    """The HTTP status of a domain error."""
    for cls in type(error).__mro__:
        status = _DOMAIN_STATUS.get(cls)
        if status is not None:
            return status
    raise AssertionError(f"{type(error).__name__} has no HTTP status")  # every family's base is in the table


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, *, protocol: Protocol = "v1"
) -> JSONResponse:
    return JSONResponse(error_body(code, message, protocol), status_code=status, headers=headers)


def error_headers(error: DomainError) -> dict[str, str] | None:
    """Headers an error's answer needs: ``Retry-After`` for a refusal under load."""
    if isinstance(error, OverloadedError):
        return {"Retry-After": str(error.retry_after)}
    return None


def domain_error_response(
    error: DomainError, headers: dict[str, str] | None = None, *, protocol: Protocol = "v1"
) -> JSONResponse:
    return error_response(
        http_status(error),
        error.code,
        str(error),
        {**(error_headers(error) or {}), **(headers or {})},
        protocol=protocol,
    )


def _respond(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.errors.labels(code).inc()
    return error_response(status, code, message, headers, protocol=protocol_of(request.url.path))


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_parameter",
    429: "too_many_requests",
    503: "not_ready",
}


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return _respond(request, exc.status, exc.code, exc.message, exc.headers)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DOMAIN_ERRORS)
    return _respond(request, http_status(exc), exc.code, str(exc), error_headers(exc))


async def _client_disconnected(request: Request, exc: Exception) -> JSONResponse:
    """A client that hung up (while sending its body, or while its request waited): logged without a traceback,
    counted as ``client_disconnected`` / status 499, and never mistaken for a bug of ours."""
    logger.info("client went away during %s %s (%s)", request.method, request.url.path, str(exc) or type(exc).__name__)
    return _respond(request, CLIENT_CLOSED_REQUEST, ClientDisconnectedError.code, "the client closed the connection")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    message = str(exc.detail)
    headers = getattr(exc, "headers", None)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}; see /docs for the API"
    elif exc.status_code == 405:
        allowed = (headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path}; use {allowed or 'another method'}"
    return _respond(request, exc.status_code, code, message, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("query", "path", "body"))
        problems.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
    return _respond(request, 422, "invalid_parameter", "; ".join(problems) or "invalid request parameters")


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _respond(request, 500, "internal_error", "the server failed to handle this request; it has been logged")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)
    for family in DOMAIN_ERRORS:
        app.add_exception_handler(family, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnected)
    app.add_exception_handler(ClientDisconnectedError, _client_disconnected)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)

"""Read the images of a request: multipart ``file`` fields, or one raw ``image/*`` body.

The body size is capped by ``BodyLimitMiddleware`` before any of this runs (Starlette would otherwise spool
multipart parts to disk without a total cap), and the number of files is capped here.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import APIError, error_response


@dataclass(frozen=True)
class Upload:
    filename: str | None
    data: bytes


HOW_TO_SEND = (
    "send images as multipart/form-data 'file' fields (curl -F file=@photo.jpg) "
    "or as a raw body with an image/* content type (curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg')"
)


async def read_uploads(request: Request, max_images: int) -> list[Upload]:
    """The request's images in order; ``APIError`` for a missing, malformed or oversized request."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        uploads = await _read_multipart(request, max_images)
    elif media_type.startswith("image/") or media_type == "application/octet-stream":
        uploads = [Upload(filename=None, data=await request.body())]
    elif not media_type and not await request.body():
        uploads = []
    else:
        raise APIError(415, "unsupported_media_type", f"content type {media_type!r} is not accepted; {HOW_TO_SEND}")
    if not uploads or (len(uploads) == 1 and not uploads[0].data):
        raise APIError(400, "empty_body", f"the request holds no image; {HOW_TO_SEND}")
    return uploads


async def _read_multipart(request: Request, max_images: int) -> list[Upload]:
    try:
        form = await request.form(max_files=max_images, max_fields=max_images + 16)
    except StarletteHTTPException as exc:
        if "Too many files" in str(exc.detail):
            raise APIError(
                400, "too_many_images", f"a request may hold at most {max_images} images; split it into several"
            ) from None
        raise APIError(400, "invalid_multipart", f"the multipart body is malformed ({exc.detail})") from None
    try:
        uploads = []
        for field_name, value in form.multi_items():
            if isinstance(value, UploadFile):
                uploads.append(Upload(filename=value.filename, data=await value.read()))
            elif field_name in ("file", "files"):
                raise APIError(400, "not_a_file", f"the '{field_name}' field holds text, not a file; {HOW_TO_SEND}")
        return uploads
    finally:
        await form.close()


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with a 413: at once when Content-Length says so, else while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> APIError:
        return APIError(
            413, "payload_too_large", f"the request body is over the limit of {self.max_bytes:,} bytes; send less"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            error = self._too_large()
            await error_response(error.status, error.code, error.message, {"Connection": "close"})(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, limited_receive, send)

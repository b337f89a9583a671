"""Read the images of a request: multipart ``file`` fields, or one raw ``image/*`` body.

The body size is capped by ``app.api.body_limit.BodyLimitMiddleware`` before any of this runs (Starlette would
otherwise spool multipart parts to disk without a total cap), and the number of files is capped here. A request
that cannot be read raises an ``UploadError`` whose ``code`` is stable; ``app.api.errors`` maps it to an HTTP status.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import ClassVar

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive

from app.engine.inference import Upload


class UploadError(ValueError):
    """A request whose images cannot be read; ``code`` names the problem, the message says how to send them."""

    code: ClassVar[str] = "bad_request"


class UnsupportedMediaTypeError(UploadError):
    code = "unsupported_media_type"


class EmptyBodyError(UploadError):
    code = "empty_body"


class TooManyImagesError(UploadError):
    code = "too_many_images"


class InvalidMultipartError(UploadError):
    code = "invalid_multipart"


class NotAFileError(UploadError):
    code = "not_a_file"


class UnknownFieldError(UploadError):
    code = "unknown_field"


class PayloadTooLargeError(UploadError):
    code = "payload_too_large"


class RequestTimeoutError(UploadError):
    code = "request_timeout"


class DisconnectWatch:
    """Says whether the client of a request whose body has been read has gone away: a background task waits for
    the ASGI ``http.disconnect`` message, and each check is an attribute read. (Starlette's
    ``request.is_disconnected()`` costs 50-80 us a check, measured: an anyio cancel scope around a receive.)
    ``close()`` it before answering."""

    def __init__(self, receive: Receive) -> None:
        self._waiting: asyncio.Future[Message] = asyncio.ensure_future(receive())

    async def __call__(self) -> bool:
        waiting = self._waiting
        return (
            waiting.done()
            and not waiting.cancelled()
            and waiting.exception() is None
            and (waiting.result()["type"] == "http.disconnect")
        )

    async def wait(self) -> Message:
        """The message the watch is waiting for (a disconnect), for another reader of the same request."""
        return await asyncio.shield(self._waiting)

    def close(self) -> None:
        if not self._waiting.done():
            self._waiting.cancel()
        else:
            with contextlib.suppress(BaseException):
                self._waiting.exception()  # retrieved: no "exception was never retrieved" warning


FILE_FIELDS = ("file", "files")
"""The multipart fields that hold images (``file``, the documented one; ``files`` is accepted too)."""


def _unknown_field_message(field_name: str, is_file: bool) -> str:
    if is_file:
        return f"the multipart field {field_name!r} is not read; name each image's field 'file' (curl -F file=@a.jpg)"
    return (
        f"the multipart field {field_name!r} is not read: images go in 'file' fields (curl -F file=@photo.jpg) "
        "and options in the query string (e.g. ?top_k=3)"
    )


HOW_TO_SEND = (
    "send images as multipart/form-data 'file' fields (curl -F file=@photo.jpg) "
    "or as a raw body with an image/* content type (curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg')"
)


async def read_uploads(request: Request, max_images: int) -> list[Upload]:
    """The request's images in order; an ``UploadError`` for a missing, malformed or oversized request."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        uploads = await _read_multipart(request, max_images)
    elif media_type.startswith("image/") or media_type == "application/octet-stream":
        uploads = [Upload(filename=None, data=await request.body())]
    elif not media_type and not await request.body():
        uploads = []
    else:
        raise UnsupportedMediaTypeError(f"content type {media_type!r} is not accepted; {HOW_TO_SEND}")
    if not uploads:
        raise EmptyBodyError(f"the request holds no image; {HOW_TO_SEND}")
    if len(uploads) == 1 and not uploads[0].data:
        raise EmptyBodyError(_empty_message(uploads[0]))
    return uploads


def _empty_message(upload: Upload) -> str:
    """One empty image: say that it is empty (the request was sent the right way)."""
    if upload.filename is None:
        return "the request body is empty (0 bytes); send the image's bytes (curl --data-binary @photo.jpg)"
    named = f"the file {upload.filename!r}" if upload.filename else "the uploaded file"
    return f"{named} is empty (0 bytes); check that it is the image you meant to send"


async def _read_multipart(request: Request, max_images: int) -> list[Upload]:
    try:
        form = await request.form(max_files=max_images, max_fields=max_images + 16)
    except StarletteHTTPException as exc:
        if "Too many files" in str(exc.detail):
            raise TooManyImagesError(f"a request may hold at most {max_images} images; split it into several") from None
        raise InvalidMultipartError(f"the multipart body is malformed ({exc.detail})") from None
    try:
        uploads = []
        for field_name, value in form.multi_items():
            if field_name not in FILE_FIELDS:
                raise UnknownFieldError(_unknown_field_message(field_name, isinstance(value, UploadFile)))
            if not isinstance(value, UploadFile):
                raise NotAFileError(f"the '{field_name}' field holds text, not a file; {HOW_TO_SEND}")
            uploads.append(Upload(filename=value.filename, data=await value.read()))
        return uploads
    finally:
        await form.close()

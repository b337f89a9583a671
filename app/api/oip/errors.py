"""Why a v2 request cannot be answered. Each error has a stable ``code``; ``app.api.errors`` gives each its status."""

from __future__ import annotations

from typing import ClassVar


class ProtocolError(ValueError):
    """A v2 inference request that breaks the protocol or does not fit the model; the message says how to fix it."""

    code: ClassVar[str] = "invalid_inference_request"


class InvalidTensorError(ProtocolError):
    """A tensor with an unknown name, a wrong datatype or shape, or data that does not match them."""

    code = "invalid_tensor"


class InvalidImageInputError(ProtocolError):
    """An element of the encoded-images tensor that is not a usable image (the request is answered all or nothing)."""

    code = "invalid_image"


class TooManyInputsError(ProtocolError):
    """More images in one request than ``IMGCLF_MAX_IMAGES_PER_REQUEST``."""

    code = "too_many_images"


class ImageInputTooLargeError(ProtocolError):
    """An image with more pixels than ``IMGCLF_MAX_IMAGE_PIXELS``."""

    code = "image_too_large"


class UnsupportedEncodingError(ProtocolError):
    """A compressed request body (``Content-Encoding``), which the service does not read."""

    code = "unsupported_content_encoding"

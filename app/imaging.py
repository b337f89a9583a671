"""Turn untrusted bytes into the network's input, refusing anything that could hurt the service.

Checks happen before the expensive step they protect: the format is sniffed from an allow-list, and the pixel
count is read from the header before any pixel is decoded. Large JPEGs are decoded at reduced scale (JPEG DCT
scaling through ``Image.draft``), which costs a fraction of a full decode and changes no prediction (tested).
"""

from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from app.errors import APIError
from modelspec import Preprocessing
from modelspec.preprocess import Float32Array, normalize, resize_and_crop, to_rgb

logger = logging.getLogger(__name__)

# The plugins Pillow may try. The JPEG one also opens the multi-picture JPEGs (MPO) many phones write; GIF and
# TIFF give their first frame.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
FORMATS_TEXT = "JPEG, PNG, WebP, BMP, GIF or TIFF"


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int
    draft: bool = True


def open_image(data: bytes, limits: DecodeLimits) -> Image.Image:
    """Identify the image and check its size without decoding its pixels."""
    if not data:
        raise APIError(400, "empty_image", f"the image is empty: send the bytes of a {FORMATS_TEXT} file")
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise APIError(
            415, "unsupported_image_format", f"the data is not an image in a supported format ({FORMATS_TEXT})"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise APIError(
            413, "image_too_large", f"the image has more pixels than allowed ({limits.max_pixels:,}); resize it"
        ) from None
    except Exception as exc:  # Pillow raises many types for malformed headers
        raise APIError(400, "invalid_image", f"the image header is corrupt ({exc}); re-encode the image") from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise APIError(400, "invalid_image", "the image has no pixels")
    if width * height > limits.max_pixels:
        raise APIError(
            413,
            "image_too_large",
            f"the image is {width}x{height} = {width * height:,} pixels, more than the limit of "
            f"{limits.max_pixels:,}; resize it before sending",
        )
    return image


def decode_image(data: bytes, prep: Preprocessing, limits: DecodeLimits) -> Image.Image:
    """Decode to an RGB image, at reduced scale when that keeps the short side at least ``prep.resize_size``."""
    image = open_image(data, limits)
    if limits.draft and image.format in ("JPEG", "MPO"):
        # Ask for the smallest DCT scale whose both sides are still >= resize_size: the later resize then only
        # ever shrinks, as it would from the full-size image.
        image.draft("RGB", (prep.resize_size, prep.resize_size))
    try:
        image.load()
        return to_rgb(image)
    except APIError:
        raise
    except Exception as exc:  # truncated data, bad chunks, unsupported compression...
        logger.debug("image decode failed", exc_info=True)
        raise APIError(
            400, "invalid_image", f"the image could not be decoded ({exc}); check that the file is complete"
        ) from exc


def decode_and_preprocess(data: bytes, prep: Preprocessing, limits: DecodeLimits) -> Float32Array:
    """Untrusted bytes -> the float32 CHW array the model expects (runs on the decode thread pool)."""
    image = decode_image(data, prep, limits)
    return normalize(resize_and_crop(image, prep), prep)


@functools.cache
def sample_jpeg(width: int = 640, height: int = 480) -> bytes:
    """A synthetic photo-sized JPEG (smooth gradients), for warming up the decode path at start-up."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    pixels = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()

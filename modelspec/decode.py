"""Untrusted image bytes -> an RGB image -> the network's input: the one decoding path of serving and evaluation.

Checks happen before the expensive step they protect: the format is sniffed from an allow-list, and the pixel
count is read from the header before any pixel is decoded. JPEGs can be decoded at reduced scale (JPEG DCT
scaling): libjpeg-turbo through simplejpeg scales by M/8, so a 640x480 photo for a 256-pixel resize decodes at 5/8
(400x300) and the resize that follows reads 2.6x fewer pixels. The scale is the smallest whose sides both stay at
least the resize size, so that resize only ever shrinks, as it would from the full-size image (``jpeg_scale``). The
scaled IDCT is itself a low-pass filter, so the numbers differ a little from a full decode (mean 0.7 of 255 levels
on 640x480 photos; BENCHMARKS.md "JPEG decoding at M/8" measures time and answers): training and its evaluation
decode the same way, so the network sees at serving what it was measured on.

Phone photos are read too: HEIC/HEIF through pillow-heif's Pillow plugin (registered when this module is imported,
so every ``Image.open`` of the process that reads our images knows it) and AVIF natively (Pillow >= 11.3). Both go
through the same pixel cap and EXIF orientation as a JPEG.

This module is the one place that says which images we read: ``ALLOWED_FORMATS`` (Pillow's format names, for
bytes) and ``IMAGE_EXTENSIONS`` (file names, for folders), both derived from ``READABLE``.

Failures raise an ``ImageError`` subclass whose ``code`` is stable (the service maps it to an HTTP status).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import simplejpeg
from PIL import Image, UnidentifiedImageError, features

from modelspec.preprocess import Float32Array, normalize, orientation, resize_and_crop, to_rgb, upright
from modelspec.spec import Preprocessing


def _register_heif() -> bool:
    """Teach Pillow HEIC/HEIF (what iPhones save) once per process; False when pillow-heif is missing."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:  # a core dependency, but a trimmed install still reads every other format
        return False
    register_heif_opener()
    return True


HEIF_READABLE = _register_heif()
AVIF_READABLE = bool(features.check("avif"))

# Pillow format name -> (name shown to users, file extensions). The JPEG plugin also opens the multi-picture JPEGs
# (MPO) many phones write; GIF and TIFF give their first frame; a HEIC with several images gives its primary one.
_FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "JPEG": ("JPEG", (".jpg", ".jpeg", ".jpe", ".jfif", ".mpo")),
    "PNG": ("PNG", (".png",)),
    "WEBP": ("WebP", (".webp",)),
    "BMP": ("BMP", (".bmp",)),
    "GIF": ("GIF", (".gif",)),
    "TIFF": ("TIFF", (".tif", ".tiff")),
    "HEIF": ("HEIC", (".heic", ".heif", ".hif")),
    "AVIF": ("AVIF", (".avif",)),
}
READABLE = {
    name: entry
    for name, entry in _FORMATS.items()
    if (name != "HEIF" or HEIF_READABLE) and (name != "AVIF" or AVIF_READABLE)
}
# The plugins Pillow may try on untrusted bytes (``Image.open(..., formats=ALLOWED_FORMATS)``).
ALLOWED_FORMATS = tuple(READABLE)
# The file names a folder, a glob or a training set picks up (lower case; compare with ``suffix.lower()``).
IMAGE_EXTENSIONS = frozenset(extension for _, extensions in READABLE.values() for extension in extensions)
_SHOWN = [shown for shown, _ in READABLE.values()]
FORMATS_TEXT = f"{', '.join(_SHOWN[:-1])} or {_SHOWN[-1]}"
DEFAULT_MAX_PIXELS = 40_000_000


def is_image_name(name: str | Path) -> bool:
    """Whether a file name has one of ``IMAGE_EXTENSIONS`` (case-insensitive): the check a folder listing uses."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


class ImageError(ValueError):
    """An image that cannot be used; ``code`` names the problem, the message says how to fix it."""

    code: ClassVar[str] = "invalid_image"


class EmptyImageError(ImageError):
    code = "empty_image"


class UnsupportedImageFormatError(ImageError):
    code = "unsupported_image_format"


class ImageTooLargeError(ImageError):
    code = "image_too_large"


class InvalidImageError(ImageError):
    code = "invalid_image"


class UnreadableFileError(InvalidImageError):
    """An image file that cannot be read at all (missing, a folder, no permission)."""

    code = "unreadable_file"


@dataclass(frozen=True)
class DecodeLimits:
    """What one image may cost: at most ``max_pixels``; ``draft`` allows reduced-scale JPEG decoding."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    draft: bool = True


def open_image(data: bytes, limits: DecodeLimits = DecodeLimits()) -> Image.Image:
    """Identify the image and check its size without decoding its pixels."""
    if not data:
        raise EmptyImageError(f"the image is empty: send the bytes of a {FORMATS_TEXT} file")
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise UnsupportedImageFormatError(f"the data is not an image in a supported format ({FORMATS_TEXT})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError(f"the image has more pixels than allowed ({limits.max_pixels:,}); resize it") from None
    except Exception as exc:  # Pillow raises many types for malformed headers
        raise InvalidImageError(f"the image header is corrupt ({exc}); re-encode the image") from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImageError("the image has no pixels")
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"the image is {width}x{height} = {width * height:,} pixels, more than the limit of "
            f"{limits.max_pixels:,}; resize it before sending"
        )
    return image


def jpeg_scale(width: int, height: int, draft_size: int) -> int:
    """The M of the M/8 DCT scale a JPEG of this size decodes at for ``draft_size``: the smallest whose sides both
    stay at least ``draft_size``, and 8 rather than 7, which costs more than a full decode (7x7 IDCT, no SIMD) for
    13 % fewer pixels per side."""
    for eighths in range(1, 7):
        if min(scaled_size(width, height, eighths)) >= draft_size:
            return eighths
    return 8


def scaled_size(width: int, height: int, eighths: int) -> tuple[int, int]:
    """The size libjpeg decodes a ``width`` x ``height`` JPEG to at ``eighths``/8 (it rounds each side up)."""
    return -(-width * eighths // 8), -(-height * eighths // 8)


def _decode_scaled_jpeg(image: Image.Image, data: bytes, draft_size: int) -> Image.Image | None:
    """The JPEG's pixels at ``jpeg_scale``, upright; None when Pillow should decode it instead.

    That is a CMYK or YCCK JPEG (Pillow converts those to RGB, libjpeg-turbo's RGB output does not), and any file
    libjpeg-turbo warns about (extraneous bytes, a truncated scan): Pillow's decoder then decides, as it always
    has, between a picture and a clear error.
    """
    if image.mode not in ("RGB", "L"):
        return None
    width, height = scaled_size(*image.size, jpeg_scale(*image.size, draft_size))
    try:  # simplejpeg takes the smallest scale that gives at least these sides: exactly jpeg_scale's
        pixels = simplejpeg.decode_jpeg(data, "RGB", min_height=height, min_width=width)
    except ValueError:
        return None
    return upright(Image.fromarray(pixels), orientation(image))


def decode_rgb(data: bytes, limits: DecodeLimits = DecodeLimits(), *, draft_size: int | None = None) -> Image.Image:
    """Decode to an upright 8-bit RGB image; with ``limits.draft`` and a ``draft_size``, a JPEG decodes at the
    smallest DCT scale whose sides both stay at least ``draft_size`` (``jpeg_scale``)."""
    image = open_image(data, limits)
    if limits.draft and draft_size is not None and image.format in ("JPEG", "MPO"):
        scaled = _decode_scaled_jpeg(image, data, draft_size)
        if scaled is not None:
            return scaled
        image.draft("RGB", (draft_size, draft_size))
    try:
        image.load()
        return to_rgb(image)
    except Exception as exc:  # truncated data, bad chunks, unsupported compression...
        raise InvalidImageError(f"the image could not be decoded ({exc}); check that the file is complete") from exc


def decode(data: bytes, prep: Preprocessing, limits: DecodeLimits = DecodeLimits()) -> Image.Image:
    """Decode for ``prep``: the reduced JPEG scale keeps the short side at least ``prep.resize_size``, so the
    resize that follows only ever shrinks, as it would from the full-size image."""
    return decode_rgb(data, limits, draft_size=prep.resize_size)


def read_file(path: Path) -> bytes:
    """A file's bytes; an ``UnreadableFileError`` naming it when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UnreadableFileError(
            f"cannot read {path} ({exc.strerror or exc}); check the path and its permissions"
        ) from exc


def decode_file(path: Path, limits: DecodeLimits = DecodeLimits(), *, draft_size: int | None = None) -> Image.Image:
    """``decode_rgb`` of a file's bytes; an unreadable file is an ``UnreadableFileError`` naming it."""
    return decode_rgb(read_file(path), limits, draft_size=draft_size)


def load_input(data: bytes, prep: Preprocessing, limits: DecodeLimits = DecodeLimits()) -> Float32Array:
    """Untrusted bytes -> the float32 CHW array the network expects (what the service runs for each image)."""
    return normalize(resize_and_crop(decode(data, prep, limits), prep), prep)

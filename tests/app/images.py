"""Images the app's tests send: small generated shapes, a PNG that only pretends to be large, and what the real
model may call scikit-image's chelsea."""

from __future__ import annotations

import struct
import zlib

from PIL import Image, ImageDraw

from tests.conftest import encode


def shape_image(kind: str = "circle", size: tuple[int, int] = (64, 48)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    box = (8, 8, size[0] - 8, size[1] - 8)
    if kind == "circle":
        draw.ellipse(box, fill="red")
    else:
        draw.rectangle(box, fill="blue")
    return image


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` but carries almost no data: cheap to send, huge to decode."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


JPEG = encode(shape_image())


CAT_CLASSES = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat", "lynx"}
"""The ImageNet classes a photo of a cat (chelsea) may rightly get."""

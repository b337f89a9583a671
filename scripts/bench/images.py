"""The test photos the benchmarks send: real JPEGs of a known size, made on the spot (nothing to download)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def test_jpeg(size: tuple[int, int], quality: int = 90) -> bytes:
    """scikit-image's ``chelsea`` resized to ``size``, as a JPEG."""
    import skimage.data

    photo = np.asarray(skimage.data.chelsea())  # type: ignore[no-untyped-call]  # scikit-image has no hints here
    image = Image.fromarray(photo).resize(size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()

"""The picture of an explanation: the occlusion heatmap laid over the crop the model saw, as a PNG (Pillow + numpy).

The crop is recovered from the preprocessed array by undoing the normalisation (exact: each 8-bit level maps to one
float and back), so the picture shows precisely what the network was given. Each pixel's heat is the mean drop of
the windows that cover it; only drops above zero (evidence *for* the class) are drawn, scaled to the largest one.
"""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
from PIL import Image

from app.engine.explain import OcclusionGrid
from modelspec import Preprocessing
from modelspec.preprocess import Float32Array

UInt8Array = npt.NDArray[np.uint8]
FloatArray = npt.NDArray[np.float64]

MIN_SIDE = 224
"""Small crops (a 32 px digit) are enlarged to at least this many pixels, with whole pixels kept sharp."""
MAX_ALPHA = 0.7
"""Opacity of the hottest pixel: the image stays visible under the heat."""

# A dark red -> red -> orange -> yellow ramp: readable on photos and for red-green colour blindness (it is a
# lightness ramp), and no colour for "no evidence", so the image shows through where the model did not look.
_ANCHORS = np.array([[128, 0, 38], [227, 26, 28], [253, 141, 60], [255, 237, 160]], dtype=np.float64)


def crop_pixels(image: Float32Array, prep: Preprocessing) -> UInt8Array:
    """The RGB crop (HWC, uint8) that ``image`` (CHW, normalised) was made from."""
    mean = np.asarray(prep.mean, dtype=np.float64)[:, None, None]
    std = np.asarray(prep.std, dtype=np.float64)[:, None, None]
    levels = (image.astype(np.float64) * std + mean) * 255.0
    return np.ascontiguousarray(np.clip(np.rint(levels), 0, 255).astype(np.uint8).transpose(1, 2, 0))


def pixel_heat(drops: FloatArray, grid: OcclusionGrid) -> FloatArray:
    """Each pixel's mean drop over the windows covering it (crop_size x crop_size)."""
    total = np.zeros((grid.crop_size, grid.crop_size), dtype=np.float64)
    count = np.zeros_like(total)
    offsets = grid.offsets
    for row, top in enumerate(offsets):
        for col, left in enumerate(offsets):
            total[top : top + grid.patch, left : left + grid.patch] += drops[row, col]
            count[top : top + grid.patch, left : left + grid.patch] += 1
    result: FloatArray = total / np.maximum(count, 1)
    return result


def colours(levels: FloatArray) -> FloatArray:
    """Levels in [0, 1] -> RGB along the ramp (float, ... x 3)."""
    position = np.clip(levels, 0.0, 1.0) * (len(_ANCHORS) - 1)
    low = np.minimum(np.floor(position).astype(np.int64), len(_ANCHORS) - 2)
    fraction = (position - low)[..., None]
    result: FloatArray = _ANCHORS[low] * (1 - fraction) + _ANCHORS[low + 1] * fraction
    return result


def overlay(pixels: UInt8Array, heat: FloatArray) -> UInt8Array:
    """``pixels`` (HWC) with the positive part of ``heat`` (HW) blended over it."""
    peak = float(heat.max())
    levels = np.clip(heat / peak, 0.0, 1.0) if peak > 0 else np.zeros_like(heat)
    alpha = (levels * MAX_ALPHA)[..., None]
    blended = pixels.astype(np.float64) * (1 - alpha) + colours(levels) * alpha
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def overlay_png(image: Float32Array, prep: Preprocessing, drops: FloatArray, grid: OcclusionGrid) -> bytes:
    """The heatmap over the crop, as PNG bytes, enlarged by a whole factor to at least ``MIN_SIDE`` pixels."""
    picture = Image.fromarray(overlay(crop_pixels(image, prep), pixel_heat(drops, grid)))
    factor = max(1, -(-MIN_SIDE // grid.crop_size))
    if factor > 1:
        picture = picture.resize((grid.crop_size * factor,) * 2, Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()

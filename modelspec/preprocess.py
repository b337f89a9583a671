"""Evaluation preprocessing in PIL + numpy, shared by training (evaluation, export checks) and serving.

The arithmetic follows torchvision's ``Resize(short side) -> CenterCrop -> ToTensor -> Normalize`` exactly, so a
network trained with torchvision-style transforms sees the same numbers here; a test compares the two.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from modelspec.spec import Preprocessing

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}

Float32Array = npt.NDArray[np.float32]


def to_rgb(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation and convert any mode (L, LA, P, RGBA, CMYK, I;16, ...) to 8-bit RGB.

    Transparent pixels are composited onto white, which is what a viewer shows, rather than onto whatever colour
    the encoder left under them.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit integer greyscale: scale to 8 bits instead of clipping everything above 255 to white.
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        grey = np.clip(array * (255.0 / top), 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
        return Image.fromarray(scaled.round().astype(np.uint8)).convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Size after resizing the short side to ``short_side``, keeping the aspect ratio (torchvision's rounding)."""
    if width <= height:
        return short_side, int(short_side * height / width)
    return int(short_side * width / height), short_side


def resize_and_crop(image: Image.Image, prep: Preprocessing) -> Image.Image:
    """Resize the short side to ``prep.resize_size``, then take the centre ``prep.crop_size`` square."""
    width, height = image.size
    new_size = resized_size(width, height, prep.resize_size)
    if new_size != image.size:
        image = image.resize(new_size, _RESAMPLE[prep.interpolation])
    width, height = image.size
    crop = prep.crop_size
    top = int(round((height - crop) / 2.0))
    left = int(round((width - crop) / 2.0))
    return image.crop((left, top, left + crop, top + crop))


def normalize(image: Image.Image, prep: Preprocessing) -> Float32Array:
    """RGB PIL image -> float32 CHW array, scaled to [0, 1] and normalised with the spec's mean and std."""
    array = np.asarray(image, dtype=np.float32)  # HWC, 0..255
    scale = np.float32(1.0 / 255.0)
    mean = np.asarray(prep.mean, dtype=np.float32)
    inv_std = np.asarray([1.0 / s for s in prep.std], dtype=np.float32)
    # Same order of operations as ToTensor + Normalize: x / 255, then (x - mean) / std.
    out = (array * scale - mean) * inv_std
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def preprocess(image: Image.Image, prep: Preprocessing) -> Float32Array:
    """A decoded image in any mode -> the network's float32 CHW input."""
    return normalize(resize_and_crop(to_rgb(image), prep), prep)

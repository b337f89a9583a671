"""Evaluation preprocessing in PIL + numpy, shared by training (evaluation, export checks) and serving.

The arithmetic follows torchvision's ``Resize(short side) -> CenterCrop -> ToTensor -> Normalize`` exactly, so a
network trained with torchvision-style transforms sees the same numbers here; a test compares the two.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt
from PIL import ExifTags, Image

from modelspec.spec import Preprocessing

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}

Float32Array = npt.NDArray[np.float32]

# What each EXIF orientation that is not upright (1) asks for, as ImageOps.exif_transpose does it.
_TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def orientation(image: Image.Image) -> int:
    """The image's EXIF orientation (1, upright, when it has none); read from the header, no pixels decoded."""
    value = image.getexif().get(ExifTags.Base.Orientation, 1)
    return value if isinstance(value, int) else 1


def upright(image: Image.Image, exif_orientation: int) -> Image.Image:
    """``image`` turned the way ``exif_orientation`` says: for pixels decoded apart from the file's EXIF."""
    method = _TRANSPOSE_FOR_ORIENTATION.get(exif_orientation)
    return image if method is None else image.transpose(method)


def to_rgb(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation and convert any mode (L, LA, P, RGBA, CMYK, I;16, ...) to 8-bit RGB.

    Transparent pixels are composited onto white, which is what a viewer shows, rather than onto whatever colour
    the encoder left under them. An upright RGB image is returned as it is, not copied.
    """
    image = upright(image, orientation(image))  # an upright image is not copied (exif_transpose would copy it)
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


@functools.lru_cache(maxsize=64)
def _level_table(mean: tuple[float, ...], std: tuple[float, ...]) -> Float32Array:
    """The normalised value of each of the 256 levels, per channel (C x 256)."""
    levels = np.arange(256, dtype=np.float32)[:, None]
    scale = np.float32(1.0 / 255.0)
    mean_array = np.asarray(mean, dtype=np.float32)
    inv_std = np.asarray([1.0 / s for s in std], dtype=np.float32)
    # Same order of operations as ToTensor + Normalize: x / 255, then (x - mean) / std, in float32.
    table: Float32Array = np.ascontiguousarray(((levels * scale - mean_array) * inv_std).T)
    table.flags.writeable = False
    return table


def normalize(image: Image.Image, prep: Preprocessing) -> Float32Array:
    """RGB PIL image -> float32 CHW array, scaled to [0, 1] and normalised with the spec's mean and std.

    An 8-bit channel has only 256 levels, so each level's value is computed once (with the same float32
    arithmetic as the direct formula, hence bit-identical results) and looked up: no float copy of the image, no
    temporaries, and the transpose to CHW comes for free.
    """
    pixels = np.asarray(image)  # HWC uint8
    table = _level_table(tuple(prep.mean), tuple(prep.std))
    height, width, channels = pixels.shape
    out = np.empty((channels, height, width), dtype=np.float32)
    for channel in range(channels):
        # uint8 indices are always in range; "wrap" skips the bounds check and the buffering that "raise" needs.
        np.take(table[channel], pixels[:, :, channel], out=out[channel], mode="wrap")
    return out


def preprocess(image: Image.Image, prep: Preprocessing) -> Float32Array:
    """A decoded image in any mode -> the network's float32 CHW input."""
    return normalize(resize_and_crop(to_rgb(image), prep), prep)

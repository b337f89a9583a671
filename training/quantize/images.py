"""The images quantisation sees: files through the bundle's own preprocessing, and offline natural photos.

The photos are for the embedded ImageNet model, which has no labelled data offline: scikit-image's and
scikit-learn's sample photos, each cut into random crops (a tenth to all of its area, aspect 3:4 to 4:3) and
mirrored at random, so a few dozen photos give a few hundred distinct inputs. Calibration and the check draw their
crops with different seeds, so they never see the same input.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from modelspec.decode import ImageError, load_input, read_file
from modelspec.preprocess import Float32Array, preprocess
from modelspec.spec import Preprocessing

logger = logging.getLogger(__name__)

LabelledImage = tuple[Path, int]

SKIMAGE_PHOTOS = (
    "astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "text",
)  # fmt: skip
"""scikit-image's photographs (its synthetic and binary images are left out), all in its own package."""


class UnreadableImageError(ValueError):
    """An image file the calibration or the check needs cannot be read."""


def load(path: Path, prep: Preprocessing) -> Float32Array:
    """One file as the service reads it (``modelspec.decode.load_input``: decode, RGB, resize, crop, normalise)."""
    try:
        return load_input(read_file(path), prep)
    except ImageError as exc:
        raise UnreadableImageError(f"cannot read {path}: {exc}") from exc


def batches(paths: Sequence[Path], prep: Preprocessing, batch_size: int = 32) -> Iterator[Float32Array]:
    """The files, preprocessed, in order, ``batch_size`` at a time."""
    for start in range(0, len(paths), batch_size):
        yield np.stack([load(path, prep) for path in paths[start : start + batch_size]])


def load_all(paths: Sequence[Path], prep: Preprocessing) -> Float32Array:
    if not paths:
        return np.zeros((0, 3, prep.crop_size, prep.crop_size), dtype=np.float32)
    return np.concatenate(list(batches(paths, prep)))


def spread(samples: Sequence[LabelledImage], count: int, seed: int = 0) -> list[LabelledImage]:
    """``count`` samples drawn evenly from every class (round robin over classes in a seeded order)."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[LabelledImage]] = {}
    for sample in samples:
        by_class.setdefault(sample[1], []).append(sample)
    queues = [list(rng.permutation(len(items))) for items in by_class.values()]
    groups = list(by_class.values())
    chosen: list[LabelledImage] = []
    while len(chosen) < min(count, len(samples)):
        for group, queue in zip(groups, queues, strict=True):
            if queue and len(chosen) < count:
                chosen.append(group[int(queue.pop())])
    return chosen


def natural_photos() -> list[tuple[str, Image.Image]]:
    """The photos that ship offline with scikit-image and scikit-learn, as RGB images."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos: list[tuple[str, Image.Image]] = []
    for name in SKIMAGE_PHOTOS:
        try:
            pixels = np.asarray(getattr(skimage.data, name)())
        except Exception as exc:  # a scikit-image release without this photo, or one it would download
            logger.debug("scikit-image photo %s unavailable: %s", name, exc)
            continue
        photos.append((f"skimage.{name}", Image.fromarray(pixels).convert("RGB")))
    for side in ("left", "right"):
        path = Path(skimage.data.__file__).parent / f"motorcycle_{side}.png"
        if path.is_file():
            with Image.open(path) as image:
                photos.append((f"skimage.motorcycle_{side}", image.convert("RGB")))
    samples = load_sample_images()
    for file_name, pixels in zip(samples.filenames, samples.images, strict=True):
        photos.append((f"sklearn.{Path(file_name).name}", Image.fromarray(pixels).convert("RGB")))
    return photos


def natural_crops(count: int, prep: Preprocessing, seed: int) -> Float32Array:
    """``count`` random crops (some mirrored) of the offline photos, through ``prep``: N x C x H x W."""
    photos = [image for _, image in natural_photos()]
    rng = np.random.default_rng(seed)
    out = np.empty((count, 3, prep.crop_size, prep.crop_size), dtype=np.float32)
    for index in range(count):
        image = photos[index % len(photos)]
        out[index] = preprocess(_random_crop(image, rng), prep)
    return out


def _random_crop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    width, height = image.size
    area = width * height * rng.uniform(0.1, 1.0)
    aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
    crop_w = min(width, max(16, round(np.sqrt(area * aspect))))
    crop_h = min(height, max(16, round(np.sqrt(area / aspect))))
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    crop = image.crop((left, top, left + crop_w, top + crop_h))
    return crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop

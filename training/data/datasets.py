"""The datasets training reads: images decoded the way the service decodes them (``modelspec.decode``).

Evaluation data goes through ``modelspec.preprocess`` (the function the service uses) so that validation numbers
are the numbers the service will reproduce; training augmentation (``training.data.transforms``) ends in the same
normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from modelspec.decode import DEFAULT_MAX_PIXELS, DecodeLimits, decode_file
from modelspec.spec import Preprocessing
from training.data.folders import Sample
from training.data.transforms import EvalTransform, ImageTransform
from training.errors import DataError

# The user's own files: Pillow's decompression-bomb check still applies, but not the service's per-request cap.
TRAINING_LIMITS = DecodeLimits(max_pixels=Image.MAX_IMAGE_PIXELS or DEFAULT_MAX_PIXELS, draft=True)


EVALUATION_LIMITS = DecodeLimits(max_pixels=TRAINING_LIMITS.max_pixels, draft=False)


def load_rgb(path: Path, draft_size: int | None = None) -> Image.Image:
    """Decode the way the service does (``modelspec.decode``).

    ``draft_size`` lets a JPEG decode at a reduced DCT scale whose sides stay at least that large (8x faster on
    phone photos): the service does so by default (``IMGCLF_DRAFT_DECODE``) with the resize size, and so do
    training and evaluation (``eval_dataset``); without it the image decodes at full scale.
    """
    limits = TRAINING_LIMITS if draft_size is not None else EVALUATION_LIMITS
    return decode_file(path, limits, draft_size=draft_size)


class ImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """(path, label) samples decoded with ``load_rgb`` and transformed to the network's input."""

    def __init__(self, samples: Sequence[Sample], transform: ImageTransform, draft_size: int | None = None) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.draft_size = draft_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        try:
            image = load_rgb(path, self.draft_size)
        except Exception as exc:  # checked at scan time; this only happens if the file changed since
            raise DataError(f"cannot read {path} any more ({exc}); was the data changed during training?") from exc
        return self.transform(image), label


def eval_dataset(samples: Sequence[Sample], prep: Preprocessing) -> ImageDataset:
    """The images as the service reads them with its default settings: ``modelspec.load_input``'s decoding (large
    JPEGs at reduced DCT scale, down to the resize size) and preprocessing."""
    return ImageDataset(samples, EvalTransform(prep), draft_size=prep.resize_size)

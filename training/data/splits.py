"""Splits: the training, validation and test samples of a run, from its folders (``load_training_data``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.config import FitConfig
from training.data.folders import ImageFolder, Sample, fingerprint, scan_image_folder
from training.data.hints import split_folders_warning
from training.errors import DataError

logger = logging.getLogger(__name__)


def stratified_split(samples: Sequence[Sample], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split each class by ``val_fraction`` with a seeded shuffle; every class with two or more images is in both."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[Sample]] = {}
    for sample in samples:
        by_class.setdefault(sample[1], []).append(sample)
    train: list[Sample] = []
    val: list[Sample] = []
    for label in sorted(by_class):
        items = by_class[label]
        order = rng.permutation(len(items))
        n_val = min(max(round(len(items) * val_fraction), 1), len(items) - 1) if len(items) >= 2 else 0
        val.extend(items[i] for i in order[:n_val])
        train.extend(items[i] for i in order[n_val:])
    return train, val


@dataclass(frozen=True)
class TrainingData:
    """The samples a run trains and validates on, and what the report says about them."""

    classes: tuple[str, ...]
    train: list[Sample]
    val: list[Sample]
    val_source: str
    test: ImageFolder | None
    skipped: list[tuple[Path, str]]
    fingerprint: str
    warnings: tuple[str, ...] = ()
    """What looks wrong in the data (logged, and in the report)."""

    def counts(self, samples: list[Sample]) -> list[int]:
        found = [0] * len(self.classes)
        for _, label in samples:
            found[label] += 1
        return found


def load_training_data(config: FitConfig) -> TrainingData:
    """Scan and check the folders, then split; every data error surfaces here, before training starts."""
    folder = scan_image_folder(config.data)
    warning = split_folders_warning(config.data, folder.classes)
    if warning:
        logger.warning("%s", warning)
    folders = [folder]
    if config.val_data is not None:
        val_folder = scan_image_folder(config.val_data, folder.classes)
        folders.append(val_folder)
        train, val, source = list(folder.samples), list(val_folder.samples), f"folder {config.val_data}"
    else:
        train, val = stratified_split(folder.samples, config.val_fraction, config.seed)
        source = f"stratified {config.val_fraction:.0%} split of {config.data} (seed {config.seed})"
        if not val:
            raise DataError(f"{config.data} is too small to split off validation images; pass --val-data DIR")
    test = scan_image_folder(config.test_data, folder.classes) if config.test_data is not None else None
    skipped = [item for f in [*folders, *([test] if test else [])] for item in f.skipped]
    warnings = (warning,) if warning else ()
    return TrainingData(folder.classes, train, val, source, test, skipped, fingerprint(folders), warnings)

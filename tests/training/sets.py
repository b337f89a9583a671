"""Small image sets built offline for the tests that need real pictures: crops of scikit-image's photos (what an
ImageNet network knows) and a few of scikit-learn's digits per class (what it does not)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")  # a cat, an espresso, an astronaut, a rocket


def photo_crops(root: Path, *, per_class: int = 20, size: int = 64, seed: int = 0) -> Path:
    """``root/<photo>/<n>.png``: square crops of 20-45 % of each photo's short side at random places, resized to
    ``size`` px. Small crops show parts (fur, a cup's rim, a flag, a launch tower), so colour alone does not tell
    the classes apart: a randomly initialised network's features separate them far less well than ImageNet's."""
    import skimage.data

    rng = np.random.default_rng(seed)
    for name in PHOTOS:
        photo = Image.fromarray(np.asarray(getattr(skimage.data, name)()))
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        width, height = photo.size
        for index in range(per_class):
            side = int(min(width, height) * rng.uniform(0.2, 0.45))
            left, top = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
            crop = photo.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)
            crop.save(folder / f"{index:03d}.png")
    return root


def digits_subset(digits_train: Path, root: Path, per_class: int) -> Path:
    """The first ``per_class`` images of each class of a digits tree (``tests.training.digits``), copied."""
    for folder in sorted(p for p in digits_train.iterdir() if p.is_dir()):
        (root / folder.name).mkdir(parents=True, exist_ok=True)
        for path in sorted(folder.glob("*.png"))[:per_class]:
            shutil.copy(path, root / folder.name / path.name)
    return root

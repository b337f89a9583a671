"""Generated ImageFolder trees for the training tests (the ``image_folder`` fixture in ``conftest.py`` wraps
``write_images``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

FolderFactory = Callable[..., Path]


def write_images(root: Path, counts: dict[str, int], *, size: int = 20, fmt: str = "PNG", seed: int = 0) -> Path:
    """``root/<class>/<n>.<ext>``: each class a distinct colour plus noise, so even a tiny network separates them."""
    rng = np.random.default_rng(seed)
    for number, (name, count) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        base = np.array([(number * 97) % 256, (number * 53 + 80) % 256, (number * 29 + 160) % 256], dtype=np.float64)
        for index in range(count):
            pixels = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{index:03d}.{fmt.lower()}", format=fmt)
    return root

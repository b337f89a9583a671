"""Fixtures for the training tests: one torch thread, small generated image folders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.training.digits import torch_threads

FolderFactory = Callable[..., Path]


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


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


@pytest.fixture
def image_folder(tmp_path: Path) -> FolderFactory:
    """``image_folder({"cat": 5, "dog": 5})``: a fresh ImageFolder tree of generated images."""

    def make(counts: dict[str, int], name: str = "data", **kwargs: object) -> Path:
        return write_images(tmp_path / name, counts, **kwargs)  # type: ignore[arg-type]

    return make

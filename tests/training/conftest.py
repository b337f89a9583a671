"""Fixtures for the training tests: one torch thread, small generated image folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.training.digits import torch_threads
from tests.training.folders import FolderFactory, write_images


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


@pytest.fixture
def image_folder(tmp_path: Path) -> FolderFactory:
    """``image_folder({"cat": 5, "dog": 5})``: a fresh ImageFolder tree of generated images."""

    def make(counts: dict[str, int], name: str = "data", **kwargs: object) -> Path:
        return write_images(tmp_path / name, counts, **kwargs)  # type: ignore[arg-type]

    return make

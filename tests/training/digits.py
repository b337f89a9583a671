"""Reusable test helpers: scikit-learn's digits as an image folder, and a LeNet-5 fitted on it through the CLI.

The session fixtures ``digits_data`` and ``digits_bundle`` (in ``tests/conftest.py``) wrap these, so the service
tests can classify real, held-out digits with a bundle that training produced.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from modelspec import Preprocessing, load_input
from modelspec.preprocess import Float32Array

DIGITS_MODEL = "digits"


def service_input(path: Path, prep: Preprocessing) -> Float32Array:
    """What the service feeds the network for an image file: ``modelspec.load_input`` of its bytes."""
    return load_input(path.read_bytes(), prep)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run with ``count`` intra-op threads: on a small shared machine one thread beats two fighting for cores."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def make_digits_tree(root: Path) -> Path:
    """``root/train`` (1,347 images) and ``root/test`` (450), 32 px PNGs in folders ``0`` .. ``9``."""
    from training.prepare import prepare_digits

    prepare_digits(root, size=32)
    return root


def fit_args(data: Path, models_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    """The CLI arguments of a quick, well-performing digits fit (LeNet-5 from scratch, about 10 s on one core)."""
    return [
        "fit",
        "--data", str(data / "train"),
        "--backbone", "lenet5",
        "--epochs", "8",
        "--image-size", "32",
        "--batch-size", "32",
        "--lr", "0.003",
        "--augment", "none",
        "--workers", "0",
        "--models-dir", str(models_dir),
        "--run-dir", str(run_dir),
        "--name", DIGITS_MODEL,
        "--quiet",
        *extra,
    ]  # fmt: skip


def fit_digits_bundle(data: Path, models_dir: Path, run_dir: Path, *extra: str) -> Path:
    """Fit through ``python -m training fit`` (in process) and return the new bundle's folder."""
    from modelspec.bundle import list_versions
    from training.cli import main

    with torch_threads(1):
        code = main(fit_args(data, models_dir, run_dir, *extra))
    assert code == 0, f"fit exited with {code}"
    return models_dir / DIGITS_MODEL / str(list_versions(models_dir, DIGITS_MODEL)[-1])

"""Demo datasets as ImageFolder trees (``<out>/{train,test}/<class>/<n>.png``), made from data that installs
offline: Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package, and scikit-learn's 8x8 digits.

A ``.prepared.json`` records what was written, so preparing the same thing again is a no-op.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import struct
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from training.errors import DataError

logger = logging.getLogger(__name__)

FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "t-shirt_top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
)
FASHION_MNIST_FILES = {"train": "train", "test": "t10k"}
MARKER = ".prepared.json"

UInt8Array = npt.NDArray[np.uint8]


def read_idx(path: Path) -> UInt8Array:
    """An IDX file (the MNIST format: magic, big-endian dimensions, unsigned bytes), gzip-compressed or not."""
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    zeros, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zeros != 0 or dtype != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {array.size}")
    return array.reshape(shape)


def fashion_mnist_files(source: Path) -> dict[str, tuple[Path, Path]]:
    return {
        split: (source / f"{prefix}-images-idx3-ubyte.gz", source / f"{prefix}-labels-idx1-ubyte.gz")
        for split, prefix in FASHION_MNIST_FILES.items()
    }


def ensure_fashion_mnist(source: Path = FASHION_MNIST_DIR, *, install: bool = True) -> None:
    """Make sure the IDX files are there, installing the Debian package with apt-get if they are not."""
    files = [path for pair in fashion_mnist_files(source).values() for path in pair]
    if all(path.is_file() for path in files):
        return
    command = ["apt-get", "install", "-y", "--no-install-recommends", FASHION_MNIST_PACKAGE]
    hint = f"install it with: sudo apt-get install {FASHION_MNIST_PACKAGE}"
    if source != FASHION_MNIST_DIR:
        raise DataError(f"Fashion-MNIST IDX files not found in {source}")
    if not install:
        raise DataError(f"Fashion-MNIST is not installed ({source} is missing); {hint}")
    if shutil.which("apt-get") is None:
        raise DataError(f"Fashion-MNIST comes from Debian's {FASHION_MNIST_PACKAGE} package and apt-get is missing")
    if os.geteuid() != 0:
        raise DataError(f"Fashion-MNIST is not installed and installing it needs root; {hint}")
    logger.info(
        "Fashion-MNIST is not installed: installing Debian's %s package (30 MB) with apt-get", FASHION_MNIST_PACKAGE
    )
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, check=False
    )
    if done.returncode != 0 or not all(path.is_file() for path in files):
        raise DataError(f"`{' '.join(command)}` failed: {done.stderr.strip()[-500:]}; {hint}")


def prepare_fashion_mnist(
    out: Path, *, limit: int | None = None, force: bool = False, install: bool = True, source: Path = FASHION_MNIST_DIR
) -> dict[str, int]:
    """``out/train`` (60,000 images) and ``out/test`` (10,000), or the first ``limit`` per class of each."""
    recipe = {"dataset": "fashion-mnist", "limit": limit}
    if _already_prepared(out, recipe, force):
        return _marker(out)["counts"]  # type: ignore[no-any-return]
    ensure_fashion_mnist(source, install=install)

    def images() -> Iterator[tuple[str, int, UInt8Array]]:
        for split, (image_path, label_path) in fashion_mnist_files(source).items():
            pixels, labels = read_idx(image_path), read_idx(label_path)
            for index in _limited(labels, limit):
                yield split, int(labels[index]), pixels[index]

    return _write_tree(out, recipe, FASHION_MNIST_CLASSES, images())


def prepare_digits(
    out: Path,
    *,
    size: int = 32,
    test_fraction: float = 0.25,
    seed: int = 0,
    limit: int | None = None,
    force: bool = False,
) -> dict[str, int]:
    """scikit-learn's 1,797 digits (8x8, 17 grey levels) upscaled to ``size`` px (bicubic), split stratified; with
    ``limit``, the first ``limit`` per class of each split."""
    from sklearn.datasets import load_digits

    recipe: dict[str, Any] = {"dataset": "digits", "size": size, "test_fraction": test_fraction, "seed": seed}
    if limit is not None:  # (not in the recipe otherwise: trees prepared before --limit existed stay prepared)
        recipe["limit"] = limit
    if _already_prepared(out, recipe, force):
        return _marker(out)["counts"]  # type: ignore[no-any-return]
    digits = load_digits()
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        test[members[: round(len(members) * test_fraction)]] = True
    pixels = np.clip(digits.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)

    def images() -> Iterator[tuple[str, int, UInt8Array]]:
        for split, chosen in (("train", ~test), ("test", test)):
            for index in _limited(np.where(chosen, labels, -1), limit, skip=-1):
                grey = Image.fromarray(pixels[index]).resize((size, size), Image.Resampling.BICUBIC)
                yield split, int(labels[index]), np.asarray(grey)

    return _write_tree(out, recipe, tuple(str(d) for d in range(10)), images())


def _limited(labels: npt.NDArray[np.integer[Any]], limit: int | None, *, skip: int | None = None) -> list[int]:
    """The indices of ``labels`` in order, at most ``limit`` of each label; entries equal to ``skip`` left out."""
    chosen: list[int] = []
    for label in np.unique(labels):
        if label != skip:
            chosen.extend(np.flatnonzero(labels == label)[:limit].tolist())
    return sorted(chosen)


def _write_tree(
    out: Path, recipe: dict[str, Any], classes: tuple[str, ...], images: Iterator[tuple[str, int, UInt8Array]]
) -> dict[str, int]:
    """Write into a temporary sibling folder, then rename it into place: no half-prepared tree is ever left."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    written: Counter[tuple[str, int]] = Counter()
    for split, label, pixels in images:
        folder = partial / split / classes[label]
        if not written[split, label]:
            folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{written[split, label]:05d}.png")
        written[split, label] += 1
    totals = {split: sum(n for (s, _), n in written.items() if s == split) for split in ("train", "test")}
    totals = {split: n for split, n in totals.items() if n}
    (partial / MARKER).write_text(json.dumps({"recipe": recipe, "counts": totals}) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.replace(partial, out)
    logger.info("wrote %s to %s", ", ".join(f"{n} {split} images" for split, n in totals.items()), out)
    return totals


def _marker(out: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data


def _already_prepared(out: Path, recipe: dict[str, Any], force: bool) -> bool:
    if force or not out.exists():
        return False
    if _marker(out).get("recipe") == recipe:
        logger.info("%s is already prepared; nothing to do (--force rebuilds it)", out)
        return True
    if any(out.iterdir()):
        raise DataError(f"{out} exists and holds something else; choose another --out or pass --force to replace it")
    return False

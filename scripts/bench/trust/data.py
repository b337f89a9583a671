"""The data of the trust benchmark: a Fashion-MNIST model trained on six classes through the public CLI, and the
logits and embeddings of every image (known, held-out classes, digits, photos) from the bundle's ONNX model."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from modelspec import ONNX_FILE, Bundle, list_versions, preprocess, read_bundle
from modelspec.tensors import EMBEDDING, INPUT, LOGITS

logger = logging.getLogger(__name__)

CLASSES = ("t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot")
KNOWN = CLASSES[:6]  # Fashion-MNIST labels 0-5: the model learns these
HELD_OUT = CLASSES[6:]  # labels 6-9: near-OOD, never seen in training
MODEL_NAME = "trust-fashion6"


@dataclass(frozen=True)
class Outputs:
    logits: npt.NDArray[np.float32]
    embeddings: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]  # -1 where there is no known label


def run(command: Sequence[str]) -> None:
    logger.info("$ %s", " ".join(command))
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def prepare(work: Path, per_class: int) -> Path:
    """Fashion-MNIST as an ImageFolder (``per_class`` images per class and split), made once."""
    out = work / f"fashion-mnist-{per_class}"
    if not (out / "test").is_dir():
        run(
            [sys.executable, "-m", "training", "prepare", "fashion-mnist", "--out", str(out), "--limit", str(per_class)]
        )
    return out


def split_folders(source: Path, work: Path, val_share: float) -> dict[str, Path]:
    """Links for the known classes: train/ and val/ from the training split, the test split as it is."""
    folders = {"train": work / "known" / "train", "val": work / "known" / "val"}
    for label in KNOWN:
        files = sorted((source / "train" / label).iterdir())
        cut = int(len(files) * (1 - val_share))
        for part, chosen in (("train", files[:cut]), ("val", files[cut:])):
            target = folders[part] / label
            target.mkdir(parents=True, exist_ok=True)
            for file in chosen:
                link = target / file.name
                if not link.exists():
                    link.symlink_to(file.resolve())
    return folders


def train(work: Path, folders: dict[str, Path], image_size: int, epochs: int) -> Bundle:
    """A frozen-feature EfficientNet-Lite0 on the known classes, through ``python -m training fit``; reused."""
    models = work / "models"
    versions = list_versions(models, MODEL_NAME)
    if not versions:
        run([sys.executable, "-m", "training", "fit", "--data", str(folders["train"]), "--val-data",
             str(folders["val"]), "--mode", "feature-extractor", "--lr", "1e-2", "--augment", "none",
             "--image-size", str(image_size), "--epochs", str(epochs), "--models-dir", str(models),
             "--name", MODEL_NAME, "--run-dir", str(work / "run"), "--quiet"])  # fmt: skip
        versions = list_versions(models, MODEL_NAME)
    return read_bundle(models / MODEL_NAME / str(versions[-1]))


class Embedder:
    """The bundle's ONNX model on CPU: images -> logits and embeddings, with the service's preprocessing."""

    def __init__(self, bundle: Bundle, threads: int = 2) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(bundle.file(ONNX_FILE)), options, providers=["CPUExecutionProvider"])
        self.prep = bundle.spec.preprocessing

    def run(self, batch: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        logits, embeddings = self.session.run([LOGITS, EMBEDDING], {INPUT: batch})
        return np.asarray(logits), np.asarray(embeddings)

    def images(self, images: Iterable[Image.Image], labels: Sequence[int], batch: int = 64) -> Outputs:
        arrays = [preprocess(image, self.prep) for image in images]
        logits, embeddings = [], []
        for start in range(0, len(arrays), batch):
            z, e = self.run(np.stack(arrays[start : start + batch]))
            logits.append(z)
            embeddings.append(e)
        return Outputs(np.concatenate(logits), np.concatenate(embeddings), np.asarray(labels, dtype=np.int64))

    def folder(self, root: Path, classes: Sequence[str], label_of: dict[str, int]) -> Outputs:
        files = [(file, label_of.get(c, -1)) for c in classes for file in sorted((root / c).iterdir())]
        return self.images((Image.open(f) for f, _ in files), [label for _, label in files])


def digits() -> list[Image.Image]:
    """scikit-learn's 1,797 8x8 digits as grey images (light ink on black, like Fashion-MNIST)."""
    from sklearn.datasets import load_digits

    pixels = load_digits().images  # 0..16
    return [Image.fromarray((p * (255 / 16)).round().astype(np.uint8), mode="L") for p in pixels]


def photos() -> list[Image.Image]:
    """120 crops of scikit-image's sample photos (the batch benchmark's)."""
    from scripts.bench.batch.photos import variants

    return [Image.open(io.BytesIO(data)) for data in variants()]


def embed_all(bundle: Bundle, cache: Path, source: Path, folders: dict[str, Path]) -> dict[str, Outputs]:
    """Logits and embeddings of every image the benchmark uses, computed once per bundle (kept in ``cache``)."""
    key = f"{bundle.path}:{bundle.spec.files[ONNX_FILE]}"
    if cache.is_file():
        with np.load(cache) as stored:
            if str(stored["key"]) == key:
                parts = {str(k).split(".")[0] for k in stored.files if k != "key"}
                return {
                    p: Outputs(stored[f"{p}.logits"], stored[f"{p}.embeddings"], stored[f"{p}.labels"]) for p in parts
                }
    logger.info("embedding every image with %s", bundle.path)
    embedder = Embedder(bundle)
    label_of = {c: i for i, c in enumerate(bundle.spec.labels)}
    found_digits, found_photos = digits(), photos()
    outputs = {
        "train": embedder.folder(folders["train"], KNOWN, label_of),
        "val": embedder.folder(folders["val"], KNOWN, label_of),
        "known": embedder.folder(source / "test", KNOWN, label_of),
        "near": embedder.folder(source / "test", HELD_OUT, label_of),
        "digits": embedder.images(found_digits, [-1] * len(found_digits)),
        "photos": embedder.images(found_photos, [-1] * len(found_photos)),
    }
    arrays = {f"{p}.{f}": getattr(o, f) for p, o in outputs.items() for f in ("logits", "embeddings", "labels")}
    np.savez(cache, key=np.asarray(key), **arrays)
    return outputs

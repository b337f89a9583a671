"""fp32 against int8 on the same images: top-1 of each, their agreement, and model-only speed."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from modelspec import tensors
from modelspec.preprocess import Float32Array
from modelspec.quantization import PrecisionCheck
from modelspec.runtime import build_session

if TYPE_CHECKING:
    import onnxruntime as ort

IntArray = npt.NDArray[np.int64]


def session(path: Path, threads: int = 0) -> ort.InferenceSession:
    """A CPU session (``threads`` 0: ONNX Runtime's choice), its idle threads sleeping, as the service's under load."""
    return build_session(path, threads=threads or None, spinning="within-run")  # no spinning while images decode


def top1(model: ort.InferenceSession, batches: Iterable[Float32Array]) -> IntArray:
    """The top-1 class of every image, in order."""
    found = [np.argmax(model.run([tensors.LOGITS], {tensors.INPUT: batch})[0], axis=1) for batch in batches]
    return np.concatenate(found).astype(np.int64) if found else np.zeros(0, dtype=np.int64)


def outputs(model: ort.InferenceSession, batches: Iterable[Float32Array]) -> tuple[Float32Array, Float32Array]:
    """The logits and embeddings of every image, in order."""
    found = [model.run(list(tensors.OUTPUTS), {tensors.INPUT: batch}) for batch in batches]
    logits = np.concatenate([np.asarray(out[0], dtype=np.float32) for out in found])
    embeddings = np.concatenate([np.asarray(out[1], dtype=np.float32) for out in found])
    return logits, embeddings


def check(split: str, fp32: IntArray, int8: IntArray, labels: IntArray | None) -> PrecisionCheck:
    """The record of one split from the two models' top-1 classes (and the labels, when known)."""
    if len(fp32) != len(int8) or len(fp32) == 0:
        raise ValueError(f"{split}: {len(fp32)} fp32 and {len(int8)} int8 answers")
    agreement = float(np.mean(fp32 == int8))
    if labels is None:
        return PrecisionCheck(split=split, images=len(fp32), top1_agreement=agreement)
    top1_fp32 = float(np.mean(fp32 == labels))
    top1_int8 = float(np.mean(int8 == labels))
    return PrecisionCheck(
        split=split,
        images=len(fp32),
        top1_fp32=top1_fp32,
        top1_int8=top1_int8,
        top1_agreement=agreement,
        top1_drop_points=round(100.0 * (top1_fp32 - top1_int8), 4),
    )


@dataclass(frozen=True)
class Speed:
    batch_size: int
    images_per_second: float
    milliseconds_per_batch: float


def measure_speed(model: ort.InferenceSession, shape: tuple[int, int, int], batch_size: int, seconds: float) -> Speed:
    """Model-only throughput: the median of repeated runs of one random batch after a warm-up."""
    batch = np.random.default_rng(0).standard_normal((batch_size, *shape)).astype(np.float32)
    feed = {tensors.INPUT: batch}
    for _ in range(3):
        model.run(None, feed)
    timings: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(timings) < 5:
        start = time.perf_counter()
        model.run(None, feed)
        timings.append(time.perf_counter() - start)
    median = float(np.median(timings))
    return Speed(batch_size, batch_size / median, 1000.0 * median)

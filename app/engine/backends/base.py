"""What the service needs from an inference engine: a batch of preprocessed images in, logits and embeddings out."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

import numpy as np
import numpy.typing as npt

from app.engine.precision import PrecisionChoice

Batch = npt.NDArray[np.float32]
"""Preprocessed images, NCHW float32."""

Outputs = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]
"""``(logits, embeddings)``, each with one row per image."""


class Backend(Protocol):
    name: str
    """``onnx`` or ``torch``; reported in model metadata."""
    device: str
    """Where inference runs (``cpu``, ``cuda:0``)."""
    precision: PrecisionChoice
    """The graph it runs (fp32 or int8) and why; reported in model metadata and metrics."""

    def run(self, batch: Batch) -> Outputs:
        """Run a batch that may have others running beside it (the batcher can have several workers)."""
        ...

    @property
    def run_alone(self) -> Callable[[Batch], Outputs]:
        """How to run a batch while nothing else runs: ``run`` itself, unless the engine can then use more threads."""
        ...

    def warm_up(self, image_shape: tuple[int, int, int], max_batch_size: int) -> None:
        """Run the batch sizes the batcher will form most, on every session the engine keeps, so that the first
        real request pays no allocation or kernel-selection cost."""
        ...

    def close(self) -> None:
        """Release the engine's resources."""
        ...


def usual_batch_sizes(max_batch_size: int) -> set[int]:
    """A lone request, a few together, and a full batch: once the largest has run, the sizes between are cheap."""
    return {1, min(4, max_batch_size), max_batch_size}


def run_zeros(run: Callable[[Batch], Outputs], image_shape: tuple[int, int, int], sizes: Iterable[int]) -> None:
    """Run a batch of zeros of each size (warm-up)."""
    for size in sorted(sizes):
        run(np.zeros((size, *image_shape), dtype=np.float32))

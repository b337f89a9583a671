"""What the service needs from an inference engine: a batch of preprocessed images in, logits and embeddings out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import numpy.typing as npt

Batch = npt.NDArray[np.float32]
"""Preprocessed images, NCHW float32."""

Outputs = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]
"""``(logits, embeddings)``, each with one row per image."""


class Backend(Protocol):
    name: str
    """``onnx`` or ``torch``; reported in model metadata."""
    device: str
    """Where inference runs (``cpu``, ``cuda:0``)."""

    def run(self, batch: Batch) -> Outputs:
        """Run a batch that may have others running beside it (the batcher can have several workers)."""
        ...

    @property
    def run_alone(self) -> Callable[[Batch], Outputs]:
        """How to run a batch while nothing else runs: ``run`` itself, unless the engine can then use more threads."""
        ...

    def close(self) -> None:
        """Release the engine's resources."""
        ...

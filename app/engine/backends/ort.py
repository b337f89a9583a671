"""ONNX Runtime backend: the default on CPU (faster than torch eager here and needs no torch install).

Two sessions of the same graph can be kept: one with every intra-op thread, for a batch that runs alone (the
lowest latency for a lone request), and one with fewer threads for batches that run side by side under load
(each batch single-threaded on a small machine: no synchronisation between threads inside every operator, and
the cores stay busy with whole batches and decoding instead).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnxruntime as ort

from app.engine.backends.base import Batch, Outputs, run_zeros, usual_batch_sizes
from app.engine.precision import PrecisionChoice
from modelspec import ONNX_FILE, Bundle, tensors
from modelspec.runtime import Spinning, build_session

FP32 = PrecisionChoice("fp32", "fp32", ONNX_FILE)


def _session(bundle: Bundle, graph: str, threads: int, spinning: Spinning) -> ort.InferenceSession:
    return build_session(bundle.file(graph), threads=threads, spinning=spinning, shared_arena=True)


class OnnxBackend:
    name = "onnx"
    device = "cpu"

    def __init__(
        self,
        bundle: Bundle,
        threads: int,
        *,
        spinning: Spinning = "within-run",
        concurrent_threads: int | None = None,
        precision: PrecisionChoice = FP32,
    ) -> None:
        """``threads`` intra-op threads for a batch alone; ``concurrent_threads`` (when fewer) for each of several
        batches running at once; ``precision.file`` is the graph run (``model.onnx`` or the int8 one)."""
        self.precision = precision
        self._alone = _session(bundle, precision.file, threads, spinning)
        self._concurrent = (
            _session(bundle, precision.file, concurrent_threads, spinning)
            if concurrent_threads is not None and concurrent_threads < threads
            else self._alone
        )

    @property
    def sessions(self) -> tuple[ort.InferenceSession, ...]:
        return (self._alone,) if self._concurrent is self._alone else (self._alone, self._concurrent)

    def run(self, batch: Batch) -> Outputs:
        """Run a batch that may have others running beside it."""
        return self._run(self._concurrent, batch)

    @property
    def run_alone(self) -> Callable[[Batch], Outputs]:
        """Runs a batch while nothing else runs, on every intra-op thread (``run`` itself with one session)."""
        return self.run if self._concurrent is self._alone else self._run_on_every_thread

    def warm_up(self, image_shape: tuple[int, int, int], max_batch_size: int) -> None:
        run_zeros(self.run_alone, image_shape, usual_batch_sizes(max_batch_size))
        if self._concurrent is not self._alone:
            # The sessions share one memory arena, so one of them growing it to the largest batch is enough.
            run_zeros(self.run, image_shape, {1})

    def _run_on_every_thread(self, batch: Batch) -> Outputs:
        return self._run(self._alone, batch)

    @staticmethod
    def _run(session: ort.InferenceSession, batch: Batch) -> Outputs:
        logits, embeddings = session.run(list(tensors.OUTPUTS), {tensors.INPUT: batch})
        return np.asarray(logits, dtype=np.float32), np.asarray(embeddings, dtype=np.float32)

    def close(self) -> None:
        del self._alone, self._concurrent

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

from app.backends.base import Batch, Outputs
from modelspec import ONNX_FILE, Bundle

INPUT_NAME = "images"
OUTPUT_NAMES = ["logits", "embedding"]


def _session(bundle: Bundle, threads: int, spinning: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only; ORT warns about benign things at load
    return ort.InferenceSession(str(bundle.file(ONNX_FILE)), sess_options=options, providers=["CPUExecutionProvider"])


class OnnxBackend:
    name = "onnx"
    device = "cpu"

    def __init__(
        self, bundle: Bundle, threads: int, *, spinning: bool = False, concurrent_threads: int | None = None
    ) -> None:
        """``threads`` intra-op threads for a batch alone; ``concurrent_threads`` (when fewer) for each of several
        batches running at once."""
        self._alone = _session(bundle, threads, spinning)
        self._concurrent = (
            _session(bundle, concurrent_threads, spinning)
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

    def _run_on_every_thread(self, batch: Batch) -> Outputs:
        return self._run(self._alone, batch)

    @staticmethod
    def _run(session: ort.InferenceSession, batch: Batch) -> Outputs:
        logits, embeddings = session.run(OUTPUT_NAMES, {INPUT_NAME: batch})
        return np.asarray(logits, dtype=np.float32), np.asarray(embeddings, dtype=np.float32)

    def close(self) -> None:
        del self._alone, self._concurrent

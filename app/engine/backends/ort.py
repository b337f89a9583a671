"""ONNX Runtime backend: the default on CPU (faster than torch eager here and needs no torch install).

Two sessions of the same graph can be kept: one with every intra-op thread, for a batch that runs alone (the
lowest latency for a lone request), and one with fewer threads for batches that run side by side under load
(each batch single-threaded on a small machine: no synchronisation between threads inside every operator, and
the cores stay busy with whole batches and decoding instead).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np
import onnxruntime as ort

from app.engine.backends.base import Batch, Outputs, run_zeros, usual_batch_sizes
from modelspec import ONNX_FILE, Bundle, tensors

logger = logging.getLogger(__name__)

_arena_lock = threading.Lock()
_arena_shared = False


def share_one_arena() -> bool:
    """Register one CPU memory arena for every session in the process (ONNX Runtime's environment allocator).

    Each session otherwise keeps its own arena at its own peak of activation memory: two sessions of the default
    model, warmed up and loaded, held 530 MB here; sharing one arena, 380 MB.
    """
    global _arena_shared
    with _arena_lock:
        if not _arena_shared:
            try:
                memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
                ort.create_and_register_allocator(memory, ort.OrtArenaCfg(0, -1, -1, -1))
                _arena_shared = True
            except Exception:  # an older ONNX Runtime: each session keeps its own arena
                logger.warning("could not register a shared ONNX Runtime arena", exc_info=True)
        return _arena_shared


def _session(bundle: Bundle, threads: int, spinning: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if share_one_arena():
        options.add_session_config_entry("session.use_env_allocators", "1")
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

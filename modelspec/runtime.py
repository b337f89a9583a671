"""The one place an ONNX Runtime session is built, for the service, the batch command, evaluation, export checks
and benchmarks alike: any ``.onnx`` path (a bundle's ``model.onnx``, or another graph such as an int8 one).

``onnxruntime`` is imported when a session is built, not when ``modelspec`` is imported: training's environment
may lack it until it exports, and the contract stays cheap to import.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import onnxruntime as ort

Spinning = Literal["never", "within-run", "always"]
"""How idle intra-op threads wait for work. ``within-run``: they spin between the operators of a run (no futex
wake-up per operator: a lone fp32 Lite0 image 4.7 ms against 5.8 ms never spinning, int8 3.0 against 3.9 ms, here)
and stop when the run ends (``session.force_spinning_stop``), so no CPU burns between runs while images decode
(CPU per run as low as ``never``'s); ``always``: ONNX Runtime's default, they keep spinning after a run too."""

logger = logging.getLogger(__name__)

CPU = ("CPUExecutionProvider",)

_arena_lock = threading.Lock()
_arena_shared = False


def share_one_arena() -> bool:
    """Register one CPU memory arena for every session in the process (ONNX Runtime's environment allocator).

    Each session otherwise keeps its own arena at its own peak of activation memory: two sessions of the default
    model, warmed up and loaded, held 530 MB here; sharing one arena, 380 MB.
    """
    import onnxruntime as ort

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


def build_session(
    model_path: str | Path,
    *,
    threads: int | None = None,
    spinning: Spinning | None = None,
    shared_arena: bool = False,
    providers: Sequence[str] = CPU,
) -> ort.InferenceSession:
    """A session for the graph at ``model_path``, running operators one after another (one inter-op thread).

    ``threads``: intra-op threads (None: ONNX Runtime's choice, one per core). ``spinning``: how idle intra-op
    threads wait (``Spinning``; None: ONNX Runtime's default, ``always``). ``shared_arena``: allocate from the
    process-wide arena (``share_one_arena``), so several sessions do not each keep their own peak of memory.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if shared_arena and share_one_arena():
        options.add_session_config_entry("session.use_env_allocators", "1")
    if threads is not None:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0" if spinning == "never" else "1")
        options.add_session_config_entry("session.force_spinning_stop", "1" if spinning == "within-run" else "0")
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only; ORT warns about benign things at load
    return ort.InferenceSession(str(model_path), sess_options=options, providers=list(providers))

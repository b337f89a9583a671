"""Inference backends and the choice between them."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from app.config import Settings
from app.engine.backends.base import Backend, Batch, Outputs, usual_batch_sizes
from app.engine.precision import SpeedMeasure, choose_precision
from modelspec import ONNX_FILE, WEIGHTS_FILE, Bundle

logger = logging.getLogger(__name__)

__all__ = ["Backend", "Batch", "BackendUnavailableError", "Outputs", "choose_backend", "create_backend"]


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run this bundle here; the message says what to install or change."""


def _cuda_available() -> bool:
    # Importing torch costs a second or more; skip it on machines with no NVIDIA driver at all.
    if not Path("/proc/driver/nvidia/version").exists() or importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def choose_backend(settings: Settings, bundle: Bundle) -> str:
    """``auto`` picks torch on CUDA, else ONNX Runtime; falls back to torch when a bundle has no ONNX graph."""
    if settings.backend != "auto":
        return settings.backend
    if WEIGHTS_FILE in bundle.spec.files and _cuda_available():
        return "torch"
    if ONNX_FILE in bundle.spec.files:
        return "onnx"
    return "torch"


def create_backend(settings: Settings, bundle: Bundle, measure: SpeedMeasure | None = None) -> Backend:
    """The backend for ``bundle``; on ONNX Runtime with the graph ``app.engine.precision`` chooses (``measure``
    times int8 against fp32 under ``IMGCLF_PRECISION=auto``; tests pass their own)."""
    kind = choose_backend(settings, bundle)
    if kind == "onnx":
        from app.engine.backends.ort import OnnxBackend

        threads = settings.resolved_intra_op_threads()
        workers = settings.resolved_inference_workers("onnx")
        sizes = tuple(sorted(usual_batch_sizes(settings.max_batch_size)))
        precision = choose_precision(settings, bundle, threads, sizes, measure)
        logger.info("%s version %d serves %s", bundle.name, bundle.version, precision.reason)
        return OnnxBackend(
            bundle,
            threads,
            spinning=settings.spinning(),
            concurrent_threads=max(1, threads // workers),
            precision=precision,
        )
    if importlib.util.find_spec("torch") is None:
        raise BackendUnavailableError(
            "the torch backend needs PyTorch: pip install 'imgclf[torch]', or set IMGCLF_BACKEND=onnx"
        )
    from app.engine.backends.pytorch import TorchBackend

    device = settings.device if _cuda_available() else "cpu"
    return TorchBackend(bundle, device, fp16=settings.fp16, threads=settings.resolved_intra_op_threads())

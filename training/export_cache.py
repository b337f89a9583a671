"""A cache of exported ONNX graphs, so that a run whose backbone did not change skips the exporter.

``torch.onnx.export`` (the torch.export-based exporter) takes 20-30 s for EfficientNet-Lite0 on 2 busy cores, most
of a feature-extractor fit's fixed cost, and its graph is the same for every run of one architecture: only the
weights differ, and in a feature-extractor run only the classifier's. The exporter folds some weights (batch norm
into the convolutions), so a graph is reused only when every tensor that is not stored verbatim in it is unchanged:
the cache key is the architecture, input shape, library versions and a digest of those tensors; the verbatim ones
(the classifier's among them) are written into the cached graph by name. ``export.check_onnx`` checks the result
against torch exactly as it checks a fresh export, and a failure falls back to the exporter.

The cache lives in ``$IMGCLF_CACHE_DIR`` (default ``~/.cache/imgclf``) under ``onnx-graphs/``, at most
``MAX_GRAPHS`` graphs; ``IMGCLF_EXPORT_CACHE=0`` turns it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from modelspec.files import write_atomically
from modelspec.machine import cache_root
from modelspec.spec import ModelSpec

logger = logging.getLogger(__name__)

MAX_GRAPHS = 8
META_FILE = "verbatim.json"


def cache_dir() -> Path | None:
    if os.environ.get("IMGCLF_EXPORT_CACHE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    return cache_root() / "onnx-graphs"


def _architecture_key(spec: ModelSpec, sample: torch.Tensor, opset: int) -> str:
    described = {
        "architecture": spec.architecture.model_dump(mode="json"),
        "classes": spec.num_classes,
        "input": list(sample.shape[1:]),
        "opset": opset,
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:20]


def _state(network: torch.nn.Module) -> dict[str, np.ndarray]:
    return {name: value.detach().cpu().contiguous().numpy() for name, value in network.state_dict().items()}


def _digest(state: dict[str, np.ndarray], skip: set[str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(set(state) - skip):
        digest.update(name.encode())
        digest.update(str(state[name].dtype).encode())
        digest.update(np.ascontiguousarray(state[name]).tobytes())
    return digest.hexdigest()[:32]


def load_cached(spec: ModelSpec, network: torch.nn.Module, sample: torch.Tensor, opset: int, path: Path) -> bool:
    """Write the cached graph with ``network``'s weights at ``path``; False when there is none to reuse."""
    root = cache_dir()
    if root is None:
        return False
    folder = root / _architecture_key(spec, sample, opset)
    try:
        verbatim = set(json.loads((folder / META_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False
    state = _state(network)
    cached = folder / f"{_digest(state, verbatim)}.onnx"
    if not cached.is_file():
        return False
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(cached))
    except Exception as exc:  # a damaged cache file: export afresh
        logger.warning("ignoring the cached ONNX graph %s: %s", cached, exc)
        return False
    for index, initializer in enumerate(model.graph.initializer):
        if initializer.name in verbatim and initializer.name in state:
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(state[initializer.name], initializer.name))
    onnx.save(model, str(path))
    with contextlib.suppress(OSError):
        os.utime(cached)  # most recently used: pruned last
    logger.info("ONNX graph reused from %s (backbone unchanged; weights written in)", cached)
    return True


def store(spec: ModelSpec, network: torch.nn.Module, sample: torch.Tensor, opset: int, path: Path) -> None:
    """Keep the freshly exported (and checked) graph at ``path`` for later runs; never fails the export."""
    root = cache_dir()
    if root is None:
        return
    try:
        import onnx
        from onnx import numpy_helper

        state = _state(network)
        model = onnx.load(str(path))
        verbatim = sorted(
            init.name
            for init in model.graph.initializer
            if init.name in state and np.array_equal(numpy_helper.to_array(init), state[init.name])
        )
        folder = root / _architecture_key(spec, sample, opset)
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomically(folder / META_FILE, json.dumps(verbatim).encode())
        _write_atomically(folder / f"{_digest(state, set(verbatim))}.onnx", path.read_bytes())
        _prune(root)
    except Exception as exc:  # a full disk or a read-only home: the bundle matters, the cache does not
        logger.warning("could not cache the ONNX graph in %s: %s", root, exc)


def _write_atomically(target: Path, data: bytes) -> None:
    write_atomically(target, lambda temporary: temporary.write_bytes(data))


def _prune(root: Path) -> None:
    graphs = sorted(root.glob("*/*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in graphs[MAX_GRAPHS:]:
        with contextlib.suppress(OSError):
            old.unlink()

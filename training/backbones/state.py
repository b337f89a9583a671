"""Reading a weights file and loading its tensors into a backbone, whatever form the file is in."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from training.errors import ConfigError

logger = logging.getLogger(__name__)

# Keys under which training scripts commonly nest the model's state dict in a whole-run checkpoint.
_NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model", "network")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file, or a state dict saved by ``torch.save`` (loaded with weights_only=True,
    which refuses anything but tensors and plain containers: no code runs)."""
    if not path.is_file():
        raise ConfigError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling and format errors come in many types
        raise ConfigError(
            f"cannot read weights from {path} ({type(exc).__name__}: {exc}); pass a safetensors file or a "
            "plain state dict saved with torch.save(model.state_dict(), path)"
        ) from exc
    for key in _NESTED_STATE_KEYS:
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ConfigError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return dict(loaded)


def load_into_backbone(backbone: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``backbone``: every backbone tensor must be there with its shape; tensors of the old
    classifier or auxiliary heads are ignored. Accepts whole-model checkpoints and our bundles' weights."""
    state = _strip_prefix(_strip_prefix(state, "module."), "backbone.")
    target = backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in target}
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in usable.items() if v.shape != target[k].shape
    ]
    missing = [k for k in target if k not in usable and not k.endswith("num_batches_tracked")]
    if wrong or missing:
        detail = f"shapes differ: {', '.join(wrong[:3])}" if wrong else f"missing {', '.join(missing[:5])}"
        raise ConfigError(f"the weights from {source} do not fit this backbone ({detail}); are they for another model?")
    backbone.load_state_dict(usable, strict=False)
    ignored = len(state) - len(usable)
    logger.info(
        "loaded %d tensors from %s%s", len(usable), source, f" ({ignored} ignored: old head)" if ignored else ""
    )


def _strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> Mapping[str, torch.Tensor]:
    """Keep the tensors under ``prefix`` without it (``module.`` from DDP, ``backbone.`` from our bundles)."""
    if any(key.startswith(prefix) for key in state):
        return {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}
    return state

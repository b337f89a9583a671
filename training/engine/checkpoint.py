"""Checkpoints: every tensor in safetensors, everything else in JSON; nothing is ever unpickled.

``<run>/checkpoint/last.safetensors`` + ``last.json`` hold the model, optimiser, scheduler, gradient scaler, random
number generators, epoch, phase, history and configuration after each epoch; ``best.safetensors`` the weights of
the best epoch so far. Each file is written beside its final name and renamed into place, and the two halves of
``last`` carry the same random id, so a checkpoint cut short by a crash is detected instead of half-loaded.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from modelspec.files import write_atomically
from training.errors import UserError

FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoint"  # in the run folder
LAST_TENSORS = "last.safetensors"
LAST_META = "last.json"
BEST_TENSORS = "best.safetensors"


def split_tensors(value: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    """``value`` with each tensor replaced by ``{"tensor": key}`` and stored in ``tensors`` under that key."""
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().to("cpu").contiguous().clone()
        return {"tensor": path}
    if isinstance(value, dict):
        return {str(k): split_tensors(v, tensors, f"{path}/{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [split_tensors(v, tensors, f"{path}/{i}") for i, v in enumerate(value)]
    return value


def join_tensors(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of ``split_tensors``."""
    if isinstance(value, dict):
        if set(value) == {"tensor"}:
            return tensors[value["tensor"]]
        return {k: join_tensors(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [join_tensors(v, tensors) for v in value]
    return value


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [v.tolist() if isinstance(v, np.ndarray) else v for v in np.random.get_state()],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def optimizer_state(saved: dict[str, Any]) -> dict[str, Any]:
    """An optimiser state dict read back from JSON: per-parameter keys become integers again, betas a tuple."""
    groups = [{k: tuple(v) if k == "betas" else v for k, v in group.items()} for group in saved["param_groups"]]
    return {"state": {int(key): value for key, value in saved["state"].items()}, "param_groups": groups}


def save_checkpoint(folder: Path, network: nn.Module, state: dict[str, Any]) -> None:
    """Write ``last``: the network's weights and ``state`` (tensors split out to safetensors)."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    meta = split_tensors(state, tensors, "state")
    for key, value in network.state_dict().items():
        tensors[f"model/{key}"] = value.detach().to("cpu").contiguous().clone()
    token = uuid.uuid4().hex
    write_atomically(folder / LAST_TENSORS, lambda path: save_file(tensors, str(path), metadata={"id": token}))
    document = {"format_version": FORMAT_VERSION, "id": token, "state": meta}
    write_atomically(folder / LAST_META, lambda path: path.write_text(json.dumps(document, indent=1), encoding="utf-8"))


@dataclass(frozen=True)
class Checkpoint:
    model: dict[str, torch.Tensor]
    state: dict[str, Any]


def load_checkpoint(folder: Path) -> Checkpoint:
    """Read ``last`` back; ``UserError`` if it is missing, unreadable or torn."""
    meta_path, tensors_path = folder / LAST_META, folder / LAST_TENSORS
    if not meta_path.is_file() or not tensors_path.is_file():
        raise UserError(f"no checkpoint in {folder} (expected {LAST_META} and {LAST_TENSORS})")
    try:
        document = json.loads(meta_path.read_text(encoding="utf-8"))
        tensors = load_file(str(tensors_path))
        from safetensors import safe_open

        with safe_open(str(tensors_path), framework="pt") as handle:
            token = (handle.metadata() or {}).get("id")
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the checkpoint in {folder}: {exc}") from exc
    if document.get("format_version") != FORMAT_VERSION or token != document.get("id"):
        raise UserError(f"the checkpoint in {folder} is incomplete or from another version; start a new run")
    model = {key.removeprefix("model/"): value for key, value in tensors.items() if key.startswith("model/")}
    return Checkpoint(model=model, state=join_tensors(document["state"], tensors))


def save_weights(path: Path, network: nn.Module, epoch: int) -> None:
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in network.state_dict().items()}
    write_atomically(path, lambda target: save_file(state, str(target), metadata={"epoch": str(epoch)}))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))

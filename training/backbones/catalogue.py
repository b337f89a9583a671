"""The backbones ``fit`` offers, as data: each entry says how to build the network, where its pretrained weights
come from and which preprocessing goes with them (timm keeps a model's defaults on its registry entry the same way,
as ``pretrained_cfg``). Any other timm or torchvision model is an entry made on request (``timm:<model>``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelspec.spec import Architecture, Family, Preprocessing
from training.backbones.sources import Lite0Package, TimmWeights, TorchvisionWeights, WeightSource
from training.errors import ConfigError
from training.pretrained import LITE0_PREPROCESSING

# A fixed value, or a function that looks it up in the model's library when asked (importing it is slow).
DefaultPreprocessing = Preprocessing | Callable[[], Preprocessing]

OFFLINE_DEFAULT = "efficientnet_lite0"
# From scratch, LeNet-5 takes 32 px, no crop, inputs in [-1, 1].
LENET_PREPROCESSING = Preprocessing(
    resize_size=32, crop_size=32, interpolation="bilinear", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
)


@dataclass(frozen=True)
class BackboneInfo:
    """One backbone: how to build it, where its pretrained weights are, and how to feed it."""

    name: str
    family: Family
    model: str
    summary: str
    preprocessing: DefaultPreprocessing  # the evaluation preprocessing its pretrained weights expect
    weights: WeightSource | None = None  # None: no pretrained weights, it trains from scratch
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    pretrained_kwargs: Mapping[str, Any] = field(default_factory=dict)  # added when it starts from its weights
    min_size: int = 32

    @property
    def has_pretrained(self) -> bool:
        return self.weights is not None

    def default_preprocessing(self) -> Preprocessing:
        return self.preprocessing if isinstance(self.preprocessing, Preprocessing) else self.preprocessing()

    def architecture(self, *, pretrained: bool, dropout: float, batch_norm: bool | None = None) -> Architecture:
        kwargs = {**self.kwargs, **(self.pretrained_kwargs if pretrained else {})}
        if self.family == "lenet" and batch_norm is not None:
            kwargs["batch_norm"] = batch_norm
        return Architecture(family=self.family, name=self.model, kwargs=kwargs, dropout=dropout)


def torchvision_backbone(
    model: str,
    summary: str,
    *,
    name: str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    pretrained_kwargs: Mapping[str, Any] | None = None,
    min_size: int = 32,
) -> BackboneInfo:
    """A torchvision model with its default weights, preprocessed as those weights' transforms say."""
    source = TorchvisionWeights(model)
    return BackboneInfo(
        name or model,
        "torchvision",
        model,
        summary,
        source.preprocessing,
        source,
        kwargs=kwargs or {},
        pretrained_kwargs=pretrained_kwargs or {},
        min_size=min_size,
    )


def timm_backbone(model: str, summary: str, *, name: str | None = None) -> BackboneInfo:
    """A timm model with its pretrained weights, preprocessed as its ``pretrained_cfg`` says."""
    source = TimmWeights(model)
    return BackboneInfo(name or model, "timm", model, summary, source.preprocessing, source)


# GoogLeNet and Inception v3 as torchvision builds them for their ImageNet weights, minus the auxiliary heads
# (training-time extras whose outputs we never use); init_weights=True is the documented default, made explicit.
_INCEPTION_KWARGS = {"aux_logits": False, "init_weights": True}
_INCEPTION_PRETRAINED_KWARGS = {"transform_input": True}

CATALOGUE: dict[str, BackboneInfo] = {
    info.name: info
    for info in (
        BackboneInfo(
            "lenet5", "lenet", "lenet5", "LeNet-5 (1998): the from-scratch baseline", LENET_PREPROCESSING, min_size=8
        ),
        torchvision_backbone("vgg11_bn", "VGG-11 with batch norm (2014)"),
        torchvision_backbone("vgg16_bn", "VGG-16 with batch norm (2014)"),
        torchvision_backbone("vgg11", "VGG-11 (2014)"),
        torchvision_backbone("vgg16", "VGG-16 (2014)"),
        torchvision_backbone(
            "googlenet",
            "GoogLeNet / Inception v1 (2014)",
            kwargs=_INCEPTION_KWARGS,
            pretrained_kwargs=_INCEPTION_PRETRAINED_KWARGS,
            min_size=15,
        ),
        torchvision_backbone(
            "inception_v3",
            "Inception v3 (2015)",
            kwargs=_INCEPTION_KWARGS,
            pretrained_kwargs=_INCEPTION_PRETRAINED_KWARGS,
            min_size=75,
        ),
        torchvision_backbone("resnet18", "ResNet-18 (2015)"),
        torchvision_backbone("resnet50", "ResNet-50 (2015)"),
        torchvision_backbone("mobilenet_v3_small", "MobileNetV3-Small (2019)"),
        torchvision_backbone("mobilenet_v3_large", "MobileNetV3-Large (2019)"),
        torchvision_backbone("efficientnet_b0", "EfficientNet-B0 (2019)"),
        BackboneInfo(
            OFFLINE_DEFAULT,
            "timm",
            "tf_efficientnet_lite0",
            "EfficientNet-Lite0 (2020): ImageNet weights offline, the default",
            LITE0_PREPROCESSING,
            weights=Lite0Package(),
        ),
        torchvision_backbone("convnext_tiny", "ConvNeXt-Tiny (2022)"),
    )
}
VGG_BN = {"vgg11": "vgg11_bn", "vgg16": "vgg16_bn"}


def resolve(name: str, batch_norm: bool | None = None) -> BackboneInfo:
    """The backbone called ``name``: a catalogue name, ``timm:<model>`` or ``torchvision:<model>``."""
    info = lookup(name)
    if batch_norm is None or info.family == "lenet":
        return info
    if info.name in VGG_BN or info.name in VGG_BN.values():
        wanted = VGG_BN.get(info.name, info.name) if batch_norm else info.name.removesuffix("_bn")
        return CATALOGUE[wanted]
    raise ConfigError(f"--batch-norm applies to lenet5 and the VGG backbones; {name} has its normalisation built in")


def lookup(name: str) -> BackboneInfo:
    """The catalogue entry ``name``, or an entry for ``timm:<model>`` / ``torchvision:<model>``."""
    if name in CATALOGUE:
        return CATALOGUE[name]
    library, _, model = name.partition(":")
    if model and library in _LIBRARIES:
        return _LIBRARIES[library](name, model)
    raise ConfigError(
        f"unknown backbone {name!r}; choose one of {', '.join(CATALOGUE)} (see `python -m training backbones`), "
        "or name any timm or torchvision model as timm:<name> or torchvision:<name>"
    )


def _timm_model(name: str, model: str) -> BackboneInfo:
    import timm

    if not timm.is_model(model):
        raise ConfigError(
            f'timm has no model {model!r}; list them with: python -c "import timm; '
            f"print(timm.list_models('*{model.split('.')[0][:8]}*'))\""
        )
    return timm_backbone(model, f"timm model {model}", name=name)


def _torchvision_model(name: str, model: str) -> BackboneInfo:
    import torchvision

    if model not in torchvision.models.list_models(module=torchvision.models):
        raise ConfigError(f"torchvision has no classification model {model!r}")
    return torchvision_backbone(model, f"torchvision model {model}", name=name)


_LIBRARIES: dict[str, Callable[[str, str], BackboneInfo]] = {"timm": _timm_model, "torchvision": _torchvision_model}


def preprocessing_for(info: BackboneInfo, image_size: int | None, crop_pct: float | None) -> Preprocessing:
    """The backbone's preprocessing at ``image_size`` (the crop), keeping its crop ratio unless ``crop_pct``."""
    base = info.default_preprocessing()
    crop = image_size or base.crop_size
    if crop < info.min_size:
        raise ConfigError(f"{info.name} needs images of at least {info.min_size} px; --image-size is {crop}")
    ratio = crop_pct if crop_pct is not None else base.crop_size / base.resize_size
    return base.model_copy(update={"crop_size": crop, "resize_size": max(crop, round(crop / ratio))})

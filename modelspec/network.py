"""Rebuild a bundle's network in PyTorch. Importing this module imports torch; the rest of modelspec does not.

Every network has the same surface, whatever its family: ``backbone`` maps images to the pooled embedding,
``classifier`` maps the embedding to logits, and ``forward`` returns ``(logits, embedding)``, which is also what
the ONNX export's two outputs are.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from modelspec.bundle import WEIGHTS_FILE, Bundle, BundleError
from modelspec.spec import Architecture, Family, ModelSpec


class ClassifierNet(nn.Module):
    """A backbone that yields a pooled embedding, then dropout and a linear classifier."""

    def __init__(self, backbone: nn.Module, embedding_size: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.embedding_size = embedding_size
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(embedding_size, num_classes)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = torch.flatten(self.backbone(images), 1)
        return self.classifier(self.dropout(embedding)), embedding


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al., 1998) for RGB input of any size: the from-scratch baseline, 84-d embedding.

    Adaptive pooling before the fully connected layers lets it take the project's usual input sizes, not only 32 px.
    """

    embedding_size = 84

    def __init__(self, batch_norm: bool = False) -> None:
        super().__init__()

        def norm(channels: int) -> nn.Module:
            return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()

        self.features = nn.Sequential(
            nn.Conv2d(3, 6, kernel_size=5),
            norm(6),
            nn.Tanh(),
            nn.AvgPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            norm(16),
            nn.Tanh(),
            nn.AdaptiveAvgPool2d((5, 5)),
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.fc(self.features(images))
        return result


def strip_classifier(model: nn.Module) -> int:
    """Replace a torchvision model's last ``nn.Linear`` by ``nn.Identity``; return that layer's input size.

    This turns ResNet/GoogLeNet/Inception (``fc``), VGG/MobileNet/EfficientNet/ConvNeXt (``classifier[-1]``) into
    backbones that return their pooled (penultimate) features.
    """
    last_name, last = None, None
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_name, last = module_name, module
    if last_name is None or last is None:
        raise ValueError(f"{type(model).__name__} has no linear classifier to strip")
    parent = model.get_submodule(last_name.rpartition(".")[0]) if "." in last_name else model
    setattr(parent, last_name.rpartition(".")[2], nn.Identity())
    return last.in_features


def _lenet(name: str, kwargs: dict[str, Any]) -> tuple[nn.Module, int]:
    return LeNet5(**kwargs), LeNet5.embedding_size


def _timm(name: str, kwargs: dict[str, Any]) -> tuple[nn.Module, int]:
    import timm

    model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    # MobileNetV3 and friends have a head layer after the last stage; its width is the embedding size.
    size = getattr(model, "head_hidden_size", None) or getattr(model, "num_features")  # noqa: B009
    return model, int(size)


def _torchvision(name: str, kwargs: dict[str, Any]) -> tuple[nn.Module, int]:
    import torchvision

    model = torchvision.models.get_model(name, weights=None, **kwargs)
    return model, strip_classifier(model)


# Architecture.family -> how to build an untrained backbone of that family from (model name, kwargs).
_BUILDERS: dict[Family, Callable[[str, dict[str, Any]], tuple[nn.Module, int]]] = {
    "lenet": _lenet,
    "timm": _timm,
    "torchvision": _torchvision,
}


def build_backbone(architecture: Architecture) -> tuple[nn.Module, int]:
    """An untrained backbone for ``architecture`` and its embedding size. Loads no weights, downloads nothing."""
    builder = _BUILDERS.get(architecture.family)
    if builder is None:
        raise ValueError(f"unknown architecture family {architecture.family!r}")
    return builder(architecture.name, dict(architecture.kwargs))


def build_network(spec: ModelSpec) -> ClassifierNet:
    """The untrained network a spec describes (weights come from ``load_network``)."""
    backbone, size = build_backbone(spec.architecture)
    if size != spec.embedding_size:
        raise BundleError(
            f"{spec.architecture.family}/{spec.architecture.name} yields {size}-d embeddings but the spec says "
            f"{spec.embedding_size}; the bundle was made with another library version or is corrupt"
        )
    return ClassifierNet(backbone, size, spec.num_classes, spec.architecture.dropout)


def load_weights(network: nn.Module, path: Path) -> None:
    """Load safetensors weights strictly (never a pickle); a mismatch names the missing/unexpected tensors."""
    state = load_file(str(path), device="cpu")
    result = network.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise BundleError(
            f"{path} does not fit the network: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}; re-export the bundle"
        )


def load_network(bundle: Bundle, device: str | torch.device = "cpu") -> ClassifierNet:
    """The bundle's network with its weights, in eval mode, on ``device``."""
    network = build_network(bundle.spec)
    load_weights(network, bundle.file(WEIGHTS_FILE))
    return network.eval().to(device)

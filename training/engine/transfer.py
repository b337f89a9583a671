"""Transfer learning: which parts of the backbone train, and in which phase.

A backbone is cut into *stages*, input to output: timm's own coarse ``group_matcher`` (stem, each block stage,
head convolution), torchvision's top-level blocks (ResNet's stem and layer1-4, VGG's conv blocks between pools,
the ``features`` children of MobileNet/EfficientNet/ConvNeXt, Inception's Mixed/inception groups), LeNet-5's two
conv blocks and its fully connected layers. The modes then choose what trains:

- ``feature-extractor``: only the new classifier; the backbone also stays in eval mode (BatchNorm statistics and
  dropout as at inference), so it is a fixed feature function.
- ``fine-tune``: everything.
- ``partial``: the classifier and the last N stages; BatchNorm layers of frozen stages stay in eval mode.
- ``two-phase``: the classifier alone for K epochs (so a random head does not wreck the pretrained features),
  then the last N stages, or all, with the learning rate scaled down.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from modelspec.network import ClassifierNet
from training.config import FitConfig

_POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_STEM = {"conv1", "bn1", "conv2", "conv3", "maxpool1", "maxpool2"}


@dataclass(frozen=True)
class Stage:
    """A group of backbone parameters that are frozen or unfrozen together."""

    name: str
    parameters: tuple[tuple[str, nn.Parameter], ...]

    @property
    def size(self) -> int:
        return sum(p.numel() for _, p in self.parameters)


@dataclass(frozen=True)
class Phase:
    """A stretch of epochs with one choice of trainable stages (``None``: all; 0: the head only)."""

    name: str
    epochs: int
    trainable_stages: int | None
    lr_scale: float = 1.0


def plan_phases(config: FitConfig) -> list[Phase]:
    """The phases of a run, from its transfer mode."""
    mode = config.transfer_mode
    if mode == "feature-extractor":
        return [Phase("feature-extractor", config.epochs, 0)]
    if mode == "fine-tune":
        return [Phase("fine-tune", config.epochs, None)]
    if mode == "partial":
        stages = config.unfreeze or 1
        return [Phase(f"partial (last {stages} stages)", config.epochs, stages)]
    second = "fine-tune" if config.unfreeze is None else f"fine-tune last {config.unfreeze} stages"
    return [
        Phase("head only", config.head_epochs, 0),
        Phase(second, config.epochs - config.head_epochs, config.unfreeze, config.finetune_lr_scale),
    ]


def backbone_stages(backbone: nn.Module) -> list[Stage]:
    """The backbone's stages, input to output; every parameter is in exactly one."""
    named = list(backbone.named_parameters())
    if hasattr(backbone, "group_matcher"):  # timm's uniform model surface names its own stages
        groups = _timm_groups(backbone)
    else:
        stage_of = _torchvision_stage_namer(backbone)
        groups = {}
        for name, _ in named:
            groups.setdefault(stage_of(name), []).append(name)
    by_name = dict(named)
    covered = {name for names in groups.values() for name in names}
    leftover = [name for name, _ in named if name not in covered]
    if leftover and groups:
        groups[next(reversed(groups))].extend(leftover)  # unmatched tensors train with the last stage
    elif leftover:
        groups["backbone"] = leftover
    stages = [Stage(label, tuple((n, by_name[n]) for n in names)) for label, names in groups.items() if names]
    if len(stages) > 1 and all(p.ndim <= 1 for _, p in stages[-1].parameters):
        # A final norm alone (ConvNeXt's head LayerNorm) is not a stage worth unfreezing on its own.
        last = stages.pop()
        stages[-1] = Stage(f"{stages[-1].name}+{last.name}", stages[-1].parameters + last.parameters)
    return stages


def _timm_groups(backbone: nn.Module) -> dict[str, list[str]]:
    from timm.models import group_parameters

    matcher = backbone.group_matcher(coarse=True)  # type: ignore[operator]
    groups: dict[str, list[str]] = {}
    for names in group_parameters(backbone, matcher).values():
        prefixes = dict.fromkeys(
            ".".join(n.split(".")[:2]) if n.startswith("blocks.") or n.startswith("stages.") else n.split(".")[0]
            for n in names
        )
        groups["+".join(prefixes)] = list(names)
    return groups


def _torchvision_stage_namer(backbone: nn.Module) -> Callable[[str], str]:
    """Parameter name -> stage name for torchvision models and LeNet-5 (see the module docstring)."""
    blocks: dict[str, str] = {}
    features = getattr(backbone, "features", None)
    if isinstance(features, nn.Sequential) and any(isinstance(m, _POOLING) for m in features):
        number = 1
        for index, child in enumerate(features):
            blocks[str(index)] = f"block{number}"
            number += isinstance(child, _POOLING)

    def stage_of(name: str) -> str:
        head, _, rest = name.partition(".")
        if head == "features":
            index = rest.partition(".")[0]
            return blocks.get(index, f"features.{index}")
        if match := re.match(r"(inception\d|Mixed_\d)", head):
            return match.group(1)
        if head in _STEM or head.startswith("Conv2d_"):
            return "stem"
        return head

    return stage_of


def trainable_stages(stages: list[Stage], phase: Phase) -> list[Stage]:
    if phase.trainable_stages is None:
        return list(stages)
    return stages[len(stages) - phase.trainable_stages :] if phase.trainable_stages else []


def apply_phase(network: ClassifierNet, stages: list[Stage], phase: Phase) -> None:
    """Set ``requires_grad`` for the phase: the classifier always trains, the backbone per the phase."""
    for parameter in network.backbone.parameters():
        parameter.requires_grad_(False)
    for stage in trainable_stages(stages, phase):
        for _, parameter in stage.parameters:
            parameter.requires_grad_(True)
    for parameter in network.classifier.parameters():
        parameter.requires_grad_(True)


def set_train_mode(model: nn.Module, network: ClassifierNet) -> None:
    """``model.train()``, except for frozen parts: a fully frozen backbone runs entirely in eval mode, and in a
    partly frozen one each BatchNorm whose parameters are frozen keeps its running statistics (as Keras does)."""
    model.train()
    parameters = list(network.backbone.parameters())
    if parameters and not any(p.requires_grad for p in parameters):
        network.backbone.eval()
        return
    for module in network.backbone.modules():
        own = list(module.parameters(recurse=False))
        if isinstance(module, _BatchNorm) and own and not any(p.requires_grad for p in own):
            module.eval()


def count_parameters(network: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in network.parameters())
    trainable = sum(p.numel() for p in network.parameters() if p.requires_grad)
    return trainable, total

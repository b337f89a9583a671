"""Build a backbone from its catalogue entry and load the weights it starts from.

``starting_weights`` is the fail-fast check: it runs before any data is read, looks only at local files, and
names the offline default, ``--weights`` and ``--pretrained none`` when the weights are not here. ``build`` then
takes what it found. Every backbone is built with ``modelspec.network.build_backbone``, the function the service
uses to rebuild it, so a bundle is always rebuildable from its ``Architecture`` alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from modelspec.network import build_backbone
from modelspec.spec import Architecture
from training.backbones.catalogue import OFFLINE_DEFAULT, BackboneInfo
from training.backbones.sources import LocalFile, WeightsLookup, WeightSource
from training.backbones.state import load_into_backbone
from training.errors import ConfigError
from training.pretrained import PretrainedWeightsUnavailableError


def find_weights(info: BackboneInfo) -> WeightsLookup:
    """Look for the pretrained weights of ``info`` on this machine; quick, and never touches the network."""
    return info.weights.find() if info.weights is not None else WeightsLookup(None, ())


@dataclass(frozen=True)
class StartingWeights:
    """Weights a run starts from: found on this machine, read when the backbone is built."""

    source: WeightSource
    found: WeightsLookup

    def load(self) -> Mapping[str, torch.Tensor]:
        return self.source.load(self.found)

    @property
    def provenance(self) -> str:
        return self.source.provenance(self.found)


def starting_weights(info: BackboneInfo, pretrained: str, weights: Path | None) -> StartingWeights | None:
    """The weights to start from (``None``: random initialisation); fails at once, on file checks alone, when
    pretrained weights are wanted and not on this machine."""
    if weights is not None:
        local = LocalFile(weights)
        found = local.find()
        if not found.found:
            raise ConfigError(f"weights file {weights} does not exist")
        return StartingWeights(local, found)
    wanted = pretrained == "imagenet" or (pretrained == "auto" and info.has_pretrained)
    if not wanted:
        return None
    if info.weights is None:
        raise ConfigError(f"{info.name} has no pretrained weights; train it from scratch with --pretrained none")
    found = info.weights.find()
    if not found.found:
        raise PretrainedWeightsUnavailableError(unavailable_message(info, found))
    return StartingWeights(info.weights, found)


def unavailable_message(info: BackboneInfo, lookup: WeightsLookup) -> str:
    where = "; ".join(lookup.looked_in) or "nowhere"
    return (
        f"no pretrained weights for {info.name} on this machine (looked in: {where}), and nothing is downloaded "
        f"during training. Use the offline default (--backbone {OFFLINE_DEFAULT}), pass a local file with "
        "--weights PATH (safetensors or a state dict), or train from scratch with --pretrained none"
    )


@dataclass(frozen=True)
class BuiltBackbone:
    """A backbone ready to wrap in ``ClassifierNet``, with what the spec records about it."""

    module: nn.Module
    embedding_size: int
    architecture: Architecture
    base_weights: str | None


def build(
    info: BackboneInfo, start: StartingWeights | None, *, dropout: float, batch_norm: bool | None = None
) -> BuiltBackbone:
    """Build the backbone with ``modelspec.network.build_backbone`` and load ``start`` (from ``starting_weights``)
    into it, if given."""
    architecture = info.architecture(pretrained=start is not None, dropout=dropout, batch_norm=batch_norm)
    backbone, size = build_backbone(architecture)
    if start is None:
        return BuiltBackbone(backbone, size, architecture, None)
    load_into_backbone(backbone, start.load(), start.found.source)
    return BuiltBackbone(backbone, size, architecture, start.provenance)

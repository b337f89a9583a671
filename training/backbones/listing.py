"""The rows of ``python -m training backbones``: each backbone and whether its weights are on this machine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training.backbones.build import find_weights
from training.backbones.catalogue import CATALOGUE, lookup


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
        info = lookup(name)
        found = find_weights(info)
        if not info.has_pretrained:
            status = "none (trains from scratch)"
        elif found.found:
            status = f"yes: {found.source}"
        else:  # name the file to fetch elsewhere and copy here
            status = "no" + (f" ({Path(found.looked_in[-1].split(' (')[0]).name})" if found.looked_in else "")
        prep = info.default_preprocessing()
        rows.append(BackboneRow(info.name, info.family, info.model, prep.crop_size, status, info.summary))
    return rows

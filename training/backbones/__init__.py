"""The backbones ``fit`` offers, their default preprocessing, and their pretrained weights when these are on disk.

Nothing here downloads. Weights are looked up where torchvision and timm cache them (``$TORCH_HOME/hub/checkpoints``,
the Hugging Face cache), inside the package of the offline default, or taken from a file the user passes; when
none is found, ``fit`` fails at once with a message naming the offline default, ``--weights`` and
``--pretrained none``.

- ``catalogue``: the entries (family, model, weight source, default preprocessing) and name resolution.
- ``sources``: where each kind of pretrained weights lives, and the preprocessing that comes with it.
- ``state``: reading a weights file and loading it into a backbone.
- ``build``: the fail-fast weights check and building the backbone.
- ``listing``: the rows of ``python -m training backbones``.
"""

from training.backbones.build import (
    BuiltBackbone,
    StartingWeights,
    build,
    find_weights,
    starting_weights,
    unavailable_message,
)
from training.backbones.catalogue import (
    CATALOGUE,
    OFFLINE_DEFAULT,
    BackboneInfo,
    lookup,
    preprocessing_for,
    resolve,
)
from training.backbones.listing import BackboneRow, describe
from training.backbones.sources import WeightsLookup, WeightSource
from training.backbones.state import load_into_backbone, read_state_dict

__all__ = [
    "CATALOGUE",
    "OFFLINE_DEFAULT",
    "BackboneInfo",
    "BackboneRow",
    "BuiltBackbone",
    "StartingWeights",
    "WeightSource",
    "WeightsLookup",
    "build",
    "describe",
    "find_weights",
    "load_into_backbone",
    "lookup",
    "preprocessing_for",
    "read_state_dict",
    "resolve",
    "starting_weights",
    "unavailable_message",
]

"""The model spec: everything a reader needs to use a bundle, stored as ``model.json``.

The spec is the one contract between training and serving. It carries the preprocessing with the model (as timm's
``pretrained_cfg`` does) so that a served model can never be fed differently from how it was evaluated.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelspec.quantization import Quantization
from modelspec.trust.spec import Trust

FORMAT_VERSION = 1
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)

Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos"]
Family = Literal["timm", "torchvision", "lenet"]  # the libraries a network is rebuilt with


def check_model_name(name: str) -> str:
    """Return ``name`` if it is a safe folder name for a model, else raise ``ValueError`` saying what is allowed."""
    if not _NAME_RE.match(name):
        raise ValueError(
            f"invalid model name {name!r}: use 1-64 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Preprocessing(_Frozen):
    """Evaluation preprocessing: resize the short side, centre-crop, scale to [0, 1], normalise per channel."""

    resize_size: int = Field(gt=0, description="The short side is resized to this many pixels.")
    crop_size: int = Field(gt=0, description="Side of the square centre crop fed to the network.")
    interpolation: Interpolation = "bilinear"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    channel_order: Literal["RGB"] = "RGB"
    layout: Literal["NCHW"] = "NCHW"

    @model_validator(mode="after")
    def _crop_fits(self) -> Preprocessing:
        if self.crop_size > self.resize_size:
            raise ValueError(f"crop_size ({self.crop_size}) must not exceed resize_size ({self.resize_size})")
        if any(s <= 0 for s in self.std):
            raise ValueError("every std value must be positive")
        return self

    @classmethod
    def for_crop(cls, crop_size: int, *, crop_pct: float = 0.875, **kwargs: Any) -> Preprocessing:
        """The usual ImageNet recipe: resize to ``crop_size / crop_pct`` (224 -> 256), then crop."""
        return cls(resize_size=round(crop_size / crop_pct), crop_size=crop_size, **kwargs)


class Architecture(_Frozen):
    """How to rebuild the network: a family (``timm``, ``torchvision``, ``lenet``), its model name and arguments."""

    family: Family
    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Dropout before the classifier.")


class Provenance(_Frozen):
    base_weights: str | None = Field(default=None, description="Where the starting weights came from.")
    dataset_fingerprint: str | None = None
    library_versions: dict[str, str] = Field(default_factory=dict)
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


class ModelSpec(BaseModel):
    """The content of ``model.json``. ``files`` (name -> sha256) is filled in when the bundle is written."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    name: str
    version: int | None = Field(default=None, ge=1, description="Assigned when the bundle is written.")
    description: str = ""
    architecture: Architecture
    num_classes: int = Field(gt=1)
    labels: list[str]
    preprocessing: Preprocessing
    embedding_size: int = Field(gt=0)
    metrics: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    provenance: Provenance = Field(default_factory=Provenance)
    files: dict[str, str] = Field(default_factory=dict, description="File name -> sha256 hex digest.")
    quantization: Quantization | None = Field(
        default=None, exclude_if=lambda value: value is None, description="The int8 model's record, if any."
    )
    trust: Trust | None = Field(
        default=None,
        description="Calibration, conformal and OOD data; absent in older bundles.",
        # A bundle without trust data is written exactly as before, so older releases still read it. (A field
        # rule, not a model serializer: that would hide the fields from JSON schemas, the OpenAPI one included.)
        exclude_if=lambda trust: trust is None,
    )

    @property
    def calibrated(self) -> bool:
        """Whether served probabilities are temperature-scaled (False for bundles without validation data)."""
        return self.trust is not None and self.trust.calibration is not None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        return check_model_name(name)

    @field_validator("format_version")
    @classmethod
    def _known_format(cls, value: int) -> int:
        if value > FORMAT_VERSION:
            raise ValueError(
                f"bundle format {value} is newer than this release understands ({FORMAT_VERSION}); upgrade imgclf"
            )
        return value

    @model_validator(mode="after")
    def _labels_match(self) -> ModelSpec:
        if len(self.labels) != self.num_classes:
            raise ValueError(f"{len(self.labels)} labels given for {self.num_classes} classes")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        return self

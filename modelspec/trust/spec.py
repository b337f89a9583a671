"""What ``model.json`` says about trust (the ``trust`` field of ``ModelSpec``): pydantic only, no numpy.

The arrays (sorted conformal scores, the OOD reference) live in ``trust.safetensors`` beside it; these fields say
how they were made and what they measured, so a reader can show them without loading anything.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

TRUST_FILE = "trust.safetensors"
INT8_TRUST_FILE = "trust.int8.safetensors"
"""The trust arrays refitted on the int8 graph's validation outputs (``modelspec.trust.precision``)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Reliability(_Frozen):
    """A reliability diagram: per equal-width bin of top-1 probability, the images, mean confidence, accuracy."""

    edges: list[float]
    counts: list[int]
    confidence: list[float]
    accuracy: list[float]


class Calibration(_Frozen):
    """Temperature scaling fitted on the validation split's logits: served probabilities are softmax(z / T)."""

    temperature: float = Field(gt=0)
    images: int = Field(gt=0, description="Validation images the temperature was fitted on.")
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    reliability_before: Reliability
    reliability_after: Reliability


class Conformal(_Frozen):
    """Split conformal calibration: the sorted scores of the validation images' true labels are in TRUST_FILE."""

    score: Literal["lac", "aps", "raps"]
    images: int = Field(gt=0, description="Calibration scores stored; they bound the coverage levels served.")
    lam: float = Field(default=0.0, ge=0, description="RAPS: penalty per rank beyond k_reg.")
    k_reg: int = Field(default=0, ge=0, description="RAPS: ranks free of penalty.")

    @property
    def min_coverage(self) -> float:
        return 1.0 / (self.images + 1)

    @property
    def max_coverage(self) -> float:
        return self.images / (self.images + 1)


class OutOfDistribution(_Frozen):
    """The OOD score and its flag threshold (set so that ``pass_rate`` of the validation images pass)."""

    method: Literal["knn", "mahalanobis", "energy", "msp"]
    threshold: float
    pass_rate: float = Field(gt=0, lt=1)
    validation_images: int = Field(gt=0)
    k: int | None = Field(default=None, gt=0, description="knn: the neighbour whose distance is the score.")
    dims: int | None = Field(default=None, gt=0, description="Principal directions kept (None: no projection).")
    reference_images: int = Field(default=0, ge=0, description="Training embeddings kept in the reference.")
    training_images: int = Field(default=0, ge=0, description="Training images the reference was drawn from.")
    dtype: Literal["float16", "float32"] = "float16"


class Trust(_Frozen):
    """Calibration, conformal and OOD data of a bundle; each part absent where it could not be computed."""

    file: str | None = Field(default=None, description="The bundle file holding the arrays (None: no arrays).")
    calibration: Calibration | None = None
    conformal: Conformal | None = None
    ood: OutOfDistribution | None = None

"""The int8 record of a bundle (``model.json``'s ``quantization``): how ``model.int8.onnx`` was made and measured.

Serving reads it to decide whether int8 may be served: only when ``file`` is set and ``within_bound`` is true. The
numbers are measured by training (``training.quantize``) on the bundle's own validation (and test) images, or, for
a model without labelled data, as the top-1 agreement of int8 with fp32 on offline natural photos.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CalibrationMethod = Literal["minmax", "entropy", "percentile"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Calibration(_Frozen):
    """The ONNX Runtime static quantisation settings (QDQ format) and the images their ranges came from."""

    method: CalibrationMethod = Field(description="How activation ranges are chosen from the calibration images.")
    percentile: float | None = Field(default=None, description="The percentile kept, for method 'percentile'.")
    per_channel: bool = Field(description="Weights quantised per output channel (else per tensor).")
    reduce_range: bool = Field(default=False, description="7-bit weights (avoids saturation without VNNI).")
    activations: Literal["uint8", "int8"] = "uint8"
    weights: Literal["int8"] = "int8"
    fp32_nodes: list[str] = Field(default_factory=list, description="ONNX nodes left in float32, by name.")
    fp32_policy: str = Field(default="none", description="Why those nodes stay float32 (e.g. 'stem+classifier').")
    images: int = Field(ge=1, description="Calibration images.")
    source: str = Field(description="Where the calibration images came from.")


class PrecisionCheck(_Frozen):
    """fp32 and int8 on one set of images: top-1 of each (when labelled) and how often their top-1 agree."""

    split: str = Field(description="'validation', 'test' or 'natural-images'.")
    images: int = Field(ge=1)
    top1_fp32: float | None = Field(default=None, description="None for unlabelled images.")
    top1_int8: float | None = None
    top1_agreement: float = Field(ge=0.0, le=1.0, description="Share of images with the same top-1 class.")
    top1_drop_points: float | None = Field(default=None, description="100 x (top1_fp32 - top1_int8).")


class Bound(_Frozen):
    """What int8 must meet to be served in place of fp32."""

    max_top1_drop_points: float | None = Field(default=None, description="On every labelled split checked.")
    min_top1_agreement: float | None = Field(default=None, description="For models checked without labels.")


class Candidate(_Frozen):
    """One setting tried by the search, with its validation numbers (the record keeps the best)."""

    calibration: Calibration
    check: PrecisionCheck


class Quantization(_Frozen):
    file: str | None = Field(description="The int8 ONNX file in the bundle; None when int8 was not kept.")
    within_bound: bool = Field(description="Whether int8 met the bound on every check; serving needs this.")
    bound: Bound
    reason: str = Field(description="One sentence: why int8 is or is not within its bound.")
    calibration: Calibration
    checks: list[PrecisionCheck]
    candidates: list[Candidate] = Field(default_factory=list, description="Other settings measured, if searched.")
    measured_on: dict[str, str] = Field(
        default_factory=dict, description="The CPU and ONNX Runtime the checks ran on (int8 kernels differ by CPU)."
    )
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

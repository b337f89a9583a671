"""Response bodies, as the OpenAPI docs show them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field
from pydantic.json_schema import SkipJsonSchema

from modelspec import ModelSpec
from modelspec.spec import FORMAT_VERSION
from modelspec.trust import Trust


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable error code, e.g. invalid_image.")
    message: str = Field(description="What went wrong and how to fix it.")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ModelRef(BaseModel):
    name: str
    version: int


class Prediction(BaseModel):
    label: str
    index: int
    score: float = Field(
        description="Probability: calibrated (softmax of the logits divided by the model's temperature) when the "
        "model's detail says calibrated: true, the plain softmax otherwise."
    )


class PredictionSet(BaseModel):
    coverage: float = Field(description="The coverage level asked for.")
    labels: list[str] = Field(description="The labels of the set, in class order; always holds the top-1 label.")
    indices: list[int] = Field(description="Their class indices.")


class PredictResult(BaseModel):
    file: str | None = Field(description="The multipart file name, if any.")
    predictions: list[Prediction] | None = Field(default=None, description="Best first; absent on error.")
    ood_score: float | None = Field(
        default=None,
        description="How unlike the training images this image is (higher: less like them); null when the model "
        "has no out-of-distribution reference. Absent on error.",
    )
    out_of_distribution: bool | None = Field(
        default=None,
        description="ood_score above the model's threshold (set so that 95 % of validation images pass); null "
        "when the model has no out-of-distribution reference. Absent on error.",
    )
    prediction_set: PredictionSet | None = Field(
        default=None,
        description="With coverage: the labels that together hold the true one at that rate, on average over "
        "images like the validation images (split conformal). Absent otherwise and on error.",
    )
    error: ErrorDetail | None = None


class PredictResponse(BaseModel):
    model: ModelRef
    results: list[PredictResult]


class FeatureResult(BaseModel):
    file: str | None
    embedding: list[float] | None = None
    error: ErrorDetail | None = None


class FeaturesResponse(BaseModel):
    model: ModelRef
    dim: int
    normalized: bool
    results: list[FeatureResult]


class LoadFailureInfo(BaseModel):
    version: int
    error: str
    at: str


class ModelSummary(BaseModel):
    name: str
    default: bool = Field(description="Served by /v1/predict and /v1/features.")
    version: int = Field(description="The version served when none is asked for (the newest loaded).")
    loaded_versions: list[int]
    available_versions: list[int] = Field(description="Versions present in the models folder.")
    architecture: str
    num_classes: int
    backend: str
    precision: Literal["fp32", "int8"] = Field(description="The graph served: fp32, or the bundle's int8 one.")
    precision_reason: str = Field(description="Why this precision (IMGCLF_PRECISION, the int8 bound, the speed).")


class ModelList(BaseModel):
    default: str | None
    models: list[ModelSummary]


class ModelDetail(ModelSpec):
    """The bundle's spec (every ``ModelSpec`` field but the file format: a new spec field appears here by itself)
    and how the service serves it."""

    # Every field is in every answer: the documented schema says so, as it did when the fields were listed here.
    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)

    format_version: SkipJsonSchema[int] = Field(default=FORMAT_VERSION, exclude=True)
    version: int
    files: dict[str, str] = Field(description="File name -> sha256, verified at load.")
    default: bool
    backend: str
    device: str
    precision: Literal["fp32", "int8"] = Field(description="The graph served: fp32, or the bundle's int8 one.")
    precision_reason: str = Field(
        description="Why this precision: IMGCLF_PRECISION, whether int8 is within its bound, and its speed measured "
        "here at load (e.g. 'int8: within its bound (0.58 top-1 points lost on test); 1.90x fp32's speed at "
        "batch 1, ...')."
    )
    loaded_at: str
    loaded_versions: list[int]
    available_versions: list[int]
    failed_versions: list[LoadFailureInfo] = Field(description="Versions refused at load, and why.")
    trust: Trust | None = Field(
        default=None, description="Calibration, conformal and OOD data of the bundle; null when it has none."
    )

    @computed_field(  # type: ignore[prop-decorator]
        description="Whether served probabilities are temperature-scaled (trust.calibration is present)."
    )
    @property
    def calibrated(self) -> bool:
        return self.trust is not None and self.trust.calibration is not None


class Health(BaseModel):
    status: str
    models: dict[str, list[int]] = Field(default_factory=dict)


class FailedLoad(BaseModel):
    name: str
    version: int
    error: str


class ReloadReport(BaseModel):
    loaded: list[ModelRef]
    unloaded: list[ModelRef]
    failed: list[FailedLoad]
    waiting: list[ModelRef] = Field(
        default_factory=list,
        description="New versions that do not load yet while their files are still changing (a copy in progress); "
        "retried at the next scan.",
    )


class OcclusionGridInfo(BaseModel):
    """Where the grey window was put: ``rows`` x ``cols`` positions over the ``crop_size`` square the model saw."""

    rows: int
    cols: int
    patch: int = Field(description="Side of the grey window, in crop pixels.")
    stride: int = Field(description="Step between windows, in crop pixels.")
    crop_size: int = Field(description="Side of the centre crop the model saw (preprocessing.crop_size).")
    offsets: list[int] = Field(
        description="Where the windows of each row (and column) start, in crop pixels; the last is aligned with "
        "the far edge so that every pixel is covered."
    )
    fill: str = Field(description="The occluder: mean (grey), black or white.")


class ExplainResponse(BaseModel):
    model: ModelRef
    file: str | None = Field(description="The multipart file name, if any.")
    method: str = Field(description="occlusion (Zeiler & Fergus, arXiv:1311.2901).")
    target: Prediction = Field(description="The class explained and its probability on the whole image.")
    predictions: list[Prediction] = Field(description="The whole image's top-k, best first.")
    grid: OcclusionGridInfo
    drops: list[list[float]] = Field(
        description="rows x cols: the class's probability minus its probability with that window greyed out. "
        "Large where the model relied on that part of the image; negative where hiding it made the class likelier."
    )
    forward_passes: int = Field(description="Images run through the model: the whole one and each occluded copy.")
    overlay: str | None = Field(
        default=None, description="With overlay=true: the heatmap over the crop, as a data:image/png;base64 URL."
    )

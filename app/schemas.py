"""Response bodies, as the OpenAPI docs show them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from modelspec import Architecture, Preprocessing, Provenance


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
    score: float = Field(description="Softmax probability.")


class PredictResult(BaseModel):
    file: str | None = Field(description="The multipart file name, if any.")
    predictions: list[Prediction] | None = Field(default=None, description="Best first; absent on error.")
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


class ModelList(BaseModel):
    default: str | None
    models: list[ModelSummary]


class ModelDetail(BaseModel):
    name: str
    version: int
    default: bool
    description: str
    architecture: Architecture
    num_classes: int
    labels: list[str]
    preprocessing: Preprocessing
    embedding_size: int
    metrics: dict[str, Any]
    hyperparameters: dict[str, Any]
    provenance: Provenance
    files: dict[str, str] = Field(description="File name -> sha256, verified at load.")
    backend: str
    device: str
    loaded_at: str
    loaded_versions: list[int]
    available_versions: list[int]
    failed_versions: list[LoadFailureInfo] = Field(description="Versions refused at load, and why.")


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

"""Predictions (top-k labels) and features (embeddings), for the default model or a named one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from app.api.deps import ServicesDep, VersionQuery
from app.errors import APIError
from app.inference import ImageOutcome, ItemError, l2_normalize, top_k
from app.model import LoadedModel
from app.schemas import ErrorResponse, FeaturesResponse, PredictResponse
from app.uploads import read_uploads

router = APIRouter(prefix="/v1", tags=["inference"])

IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One or more images as multipart 'file' fields, or one image as the raw body.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    "required": ["file"],
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 404, 413, 415, 422, 503)
}

TopKQuery = Annotated[int, Query(ge=1, description="How many classes to return, best first.")]
NormalizeQuery = Annotated[bool, Query(description="Scale each embedding to unit L2 norm.")]


def _error_entry(error: ItemError) -> dict[str, str]:
    return {"code": error.code, "message": str(error)}


async def _run(
    request: Request, services: ServicesDep, name: str | None, version: int | None
) -> tuple[LoadedModel, list[ImageOutcome]]:
    registry = services.registry
    registry.get(name, version)  # 404 before reading a body we would not use
    uploads = await read_uploads(request, services.settings.max_images_per_request)
    model, outcomes = await services.pipeline.run(lambda: registry.get(name, version), uploads)
    errors = [outcome.error for outcome in outcomes if outcome.error is not None]
    if len(errors) == len(outcomes):
        raise errors[0]  # nothing succeeded: answer with the (first) error's own status
    for error in errors:
        services.metrics.errors.labels(error.code).inc()
    return model, outcomes


async def _predict(
    request: Request, services: ServicesDep, name: str | None, version: int | None, k: int
) -> JSONResponse:
    if k > services.settings.max_top_k:
        raise APIError(422, "invalid_parameter", f"top_k: must be at most {services.settings.max_top_k}")
    model, outcomes = await _run(request, services, name, version)
    labels = model.spec.labels
    results: list[dict[str, object]] = []
    for outcome in outcomes:
        if outcome.logits is None:
            assert outcome.error is not None
            results.append({"file": outcome.filename, "error": _error_entry(outcome.error)})
            continue
        predictions = [{"label": labels[i], "index": i, "score": score} for i, score in top_k(outcome.logits, k)]
        results.append({"file": outcome.filename, "predictions": predictions})
    return JSONResponse({"model": {"name": model.name, "version": model.version}, "results": results})


async def _features(
    request: Request, services: ServicesDep, name: str | None, version: int | None, normalize: bool
) -> JSONResponse:
    model, outcomes = await _run(request, services, name, version)
    results: list[dict[str, object]] = []
    for outcome in outcomes:
        if outcome.embedding is None:
            assert outcome.error is not None
            results.append({"file": outcome.filename, "error": _error_entry(outcome.error)})
            continue
        vector = l2_normalize(outcome.embedding) if normalize else outcome.embedding
        results.append({"file": outcome.filename, "embedding": vector.tolist()})
    body = {
        "model": {"name": model.name, "version": model.version},
        "dim": model.spec.embedding_size,
        "normalized": normalize,
        "results": results,
    }
    return JSONResponse(body)


@router.post("/predict", response_model=PredictResponse, responses=ERRORS, openapi_extra=IMAGE_BODY)
async def predict_default(
    request: Request, services: ServicesDep, version: VersionQuery = None, top_k: TopKQuery = 5
) -> JSONResponse:
    """Classify images with the default model."""
    return await _predict(request, services, None, version, top_k)


@router.post("/models/{name}/predict", response_model=PredictResponse, responses=ERRORS, openapi_extra=IMAGE_BODY)
async def predict_image(
    name: str, request: Request, services: ServicesDep, version: VersionQuery = None, top_k: TopKQuery = 5
) -> JSONResponse:
    """Classify images with the named model."""
    return await _predict(request, services, name, version, top_k)


@router.post("/features", response_model=FeaturesResponse, responses=ERRORS, openapi_extra=IMAGE_BODY)
async def extract_features_default(
    request: Request, services: ServicesDep, version: VersionQuery = None, normalize: NormalizeQuery = False
) -> JSONResponse:
    """The pooled embedding of each image, from the default model."""
    return await _features(request, services, None, version, normalize)


@router.post("/models/{name}/features", response_model=FeaturesResponse, responses=ERRORS, openapi_extra=IMAGE_BODY)
async def extract_features(
    name: str, request: Request, services: ServicesDep, version: VersionQuery = None, normalize: NormalizeQuery = False
) -> JSONResponse:
    """The pooled embedding of each image, from the named model."""
    return await _features(request, services, name, version, normalize)

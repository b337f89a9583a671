"""Predictions (top-k labels) and features (embeddings), for the default model or a named one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from app.api.deps import ServicesDep, VersionQuery, check_top_k
from app.api.encode import encode_features, encode_predictions
from app.api.schemas import ErrorResponse, FeaturesResponse, PredictResponse
from app.api.shedding import admitted
from app.api.uploads import DisconnectWatch, read_uploads
from app.engine.inference import Inference

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
    status: {"model": ErrorResponse} for status in (400, 404, 408, 413, 415, 422, 503)
}

TopKQuery = Annotated[int, Query(ge=1, description="How many classes to return, best first.")]
NormalizeQuery = Annotated[bool, Query(description="Scale each embedding to unit L2 norm.")]


# Each result lists either its answer or its error: the other field is left out, not sent as null.
ANSWERS: dict[str, Any] = {"responses": ERRORS, "openapi_extra": IMAGE_BODY, "response_model_exclude_unset": True}


async def _infer(request: Request, services: ServicesDep, name: str | None, version: int | None) -> Inference:
    """Read the request's images and run them (decode -> batch -> predict -> unbatch); the caller encodes."""
    registry = services.registry
    let_in = admitted(request)  # shed routes: resolved, with a slot held, by app.api.shedding
    if let_in is None:
        registry.get(name, version)  # 404 before reading a body we would not use
    uploads = await read_uploads(request, services.settings.max_images_per_request)
    gone = DisconnectWatch(request.receive)  # its work is dropped if the client leaves while it waits
    try:
        inference = await services.pipeline.run(
            lambda: registry.get(name, version), uploads, admitted=let_in, disconnected=gone
        )
    finally:
        gone.close()
    errors = inference.errors
    if len(errors) == len(inference.outcomes):
        raise errors[0]  # nothing succeeded: answer with the (first) error's own status
    for error in errors:
        services.metrics.errors.labels(error.code).inc()
    return inference


async def _predict(
    request: Request, services: ServicesDep, name: str | None, version: int | None, k: int
) -> PredictResponse:
    check_top_k(k, services.settings)
    return encode_predictions(await _infer(request, services, name, version), k)


@router.post("/predict", response_model=PredictResponse, **ANSWERS)
async def predict_default(
    request: Request, services: ServicesDep, version: VersionQuery = None, top_k: TopKQuery = 5
) -> PredictResponse:
    """Classify images with the default model."""
    return await _predict(request, services, None, version, top_k)


@router.post("/models/{name}/predict", response_model=PredictResponse, **ANSWERS)
async def predict_image(
    name: str, request: Request, services: ServicesDep, version: VersionQuery = None, top_k: TopKQuery = 5
) -> PredictResponse:
    """Classify images with the named model."""
    return await _predict(request, services, name, version, top_k)


@router.post("/features", response_model=FeaturesResponse, **ANSWERS)
async def extract_features_default(
    request: Request, services: ServicesDep, version: VersionQuery = None, normalize: NormalizeQuery = False
) -> FeaturesResponse:
    """The pooled embedding of each image, from the default model."""
    return encode_features(await _infer(request, services, None, version), normalize)


@router.post("/models/{name}/features", response_model=FeaturesResponse, **ANSWERS)
async def extract_features(
    name: str, request: Request, services: ServicesDep, version: VersionQuery = None, normalize: NormalizeQuery = False
) -> FeaturesResponse:
    """The pooled embedding of each image, from the named model."""
    return encode_features(await _infer(request, services, name, version), normalize)


SHED = (predict_default, predict_image, extract_features_default, extract_features)
"""The endpoints whose requests wait for their model's slot at the edge (``app.api.shedding``)."""

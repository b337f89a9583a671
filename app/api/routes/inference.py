"""Predictions (top-k labels) and features (embeddings), for the default model or a named one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from app.api.deps import ServicesDep, VersionQuery, check_top_k
from app.api.encode import encode_features, encode_predictions
from app.api.errors import APIError
from app.api.schemas import ErrorResponse, FeaturesResponse, PredictResponse
from app.api.shedding import admitted
from app.api.uploads import DisconnectWatch, read_uploads
from app.engine.inference import Inference
from app.engine.model import LoadedModel
from app.engine.trust import check_coverage
from modelspec.trust import CoverageError

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
CoverageQuery = Annotated[
    float | None,
    Query(
        description="Add a prediction_set to each result: the labels that hold the true one at this rate (e.g. "
        "0.9), on average over images like the validation images. The levels a model serves depend on its "
        "validation images; another level, or a model without conformal data, is a 400 coverage_out_of_range."
    ),
]


# Each result lists either its answer or its error: the other field is left out, not sent as null.
ANSWERS: dict[str, Any] = {"responses": ERRORS, "openapi_extra": IMAGE_BODY, "response_model_exclude_unset": True}


async def _infer(
    request: Request,
    services: ServicesDep,
    name: str | None,
    version: int | None,
    check: Callable[[LoadedModel], None] | None = None,
) -> Inference:
    """Read the request's images and run them (decode -> batch -> predict -> unbatch); the caller encodes.
    ``check`` refuses the request's parameters for the model before the body is read."""
    registry = services.registry
    let_in = admitted(request)  # shed routes: resolved, with a slot held, by app.api.shedding
    # A 404 (or a refused parameter) before reading a body we would not use.
    model = let_in.model if let_in is not None else registry.get(name, version)
    if check is not None:
        check(model)
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


def coverage_error(error: CoverageError) -> APIError:
    return APIError(400, "coverage_out_of_range", str(error))


async def _predict(
    request: Request, services: ServicesDep, name: str | None, version: int | None, k: int, coverage: float | None
) -> PredictResponse:
    check_top_k(k, services.settings)

    def check(model: LoadedModel) -> None:
        try:
            check_coverage(model.scorer, coverage)
        except CoverageError as error:
            raise coverage_error(error) from None

    inference = await _infer(request, services, name, version, check)
    try:
        return encode_predictions(inference, k, coverage)
    except CoverageError as error:  # a hot reload swapped in a version that cannot serve this level
        raise coverage_error(error) from None


@router.post("/predict", response_model=PredictResponse, **ANSWERS)
async def predict_default(
    request: Request,
    services: ServicesDep,
    version: VersionQuery = None,
    top_k: TopKQuery = 5,
    coverage: CoverageQuery = None,
) -> PredictResponse:
    """Classify images with the default model."""
    return await _predict(request, services, None, version, top_k, coverage)


@router.post("/models/{name}/predict", response_model=PredictResponse, **ANSWERS)
async def predict_image(
    name: str,
    request: Request,
    services: ServicesDep,
    version: VersionQuery = None,
    top_k: TopKQuery = 5,
    coverage: CoverageQuery = None,
) -> PredictResponse:
    """Classify images with the named model."""
    return await _predict(request, services, name, version, top_k, coverage)


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

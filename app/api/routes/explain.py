"""Explanations: where in an image the model found its evidence for a class (occlusion, ``app.engine.explain``)."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from app.api.deps import ServicesDep, VersionQuery, check_top_k
from app.api.encode import model_ref
from app.api.errors import APIError
from app.api.explain_overlay import overlay_png
from app.api.routes.inference import IMAGE_BODY, TopKQuery
from app.api.schemas import ErrorResponse, ExplainResponse, OcclusionGridInfo, Prediction
from app.api.uploads import TooManyImagesError, read_uploads
from app.engine.explain import ExplainBusyError, ExplainError, ExplainSlots, Fill, OcclusionGrid, check_cost
from app.engine.explain import explain_occlusion as run_occlusion
from app.engine.model import LoadedModel
from app.engine.registry import ModelRegistry

router = APIRouter(prefix="/v1", tags=["explanations"])

RETRY_AFTER_S = "1"

ClassQuery = Annotated[
    str | None,
    Query(
        alias="class",
        description="The class to explain, by label (e.g. tabby) or index (e.g. 281); default: the top-1.",
    ),
]
PatchQuery = Annotated[
    int | None, Query(ge=1, description="Side of the grey window in crop pixels; default: 32 at 224, in proportion.")
]
StrideQuery = Annotated[
    int | None, Query(ge=1, description="Step between windows in crop pixels; default: half the patch.")
]
FillQuery = Annotated[
    Fill,
    Query(
        description="The occluder: mean (grey: the colour the model was normalised with, Zeiler & Fergus's choice), "
        "or black or white for images drawn on a black or white background, where grey would add a shape."
    ),
]
OverlayQuery = Annotated[
    bool, Query(description="Also return the heatmap over the crop as a PNG data URL (or send Accept: image/png).")
]

ANSWERS: dict[str, Any] = {
    "responses": {
        200: {"content": {"image/png": {}}, "description": "JSON, or the overlay PNG alone with Accept: image/png."},
        **{status: {"model": ErrorResponse} for status in (400, 404, 413, 415, 422, 429, 503)},
    },
    "openapi_extra": IMAGE_BODY,
    "response_model_exclude_none": True,
}


async def get_explain_slots(request: Request) -> ExplainSlots:
    slots: ExplainSlots = request.app.state.explain_slots
    return slots


ExplainSlotsDep = Annotated[ExplainSlots, Depends(get_explain_slots)]


def wants_png(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "image/png" in accept and "application/json" not in accept


@dataclass(frozen=True)
class ExplainOptions:
    class_: str | None
    patch: int | None
    stride: int | None
    fill: Fill
    overlay: bool
    top_k: int


def explain_options(
    class_: ClassQuery = None,
    patch: PatchQuery = None,
    stride: StrideQuery = None,
    fill: FillQuery = "mean",
    overlay: OverlayQuery = False,
    top_k: TopKQuery = 5,
) -> ExplainOptions:
    """The query parameters both explain routes take."""
    return ExplainOptions(class_, patch, stride, fill, overlay, top_k)


ExplainOptionsDep = Annotated[ExplainOptions, Depends(explain_options)]


async def _explain(
    request: Request, services: ServicesDep, slots: ExplainSlots, name: str | None, version: int | None,
    options: ExplainOptions,
) -> ExplainResponse | Response:  # fmt: skip
    settings, registry = services.settings, services.registry
    check_top_k(options.top_k, settings)
    model = registry.get(name, version)  # 404 before reading a body we would not use
    prep = model.spec.preprocessing
    try:
        grid = OcclusionGrid.for_crop(prep.crop_size, options.patch, options.stride)
        check_cost(grid, settings.explain_max_positions)
        uploads = await read_uploads(request, settings.max_images_per_request)
        if len(uploads) != 1:
            raise TooManyImagesError(f"an explanation takes one image, not {len(uploads)}; send one at a time")
        with slots.take():  # after reading the body: a slow upload does not hold a slot
            image = await services.pipeline.decode(uploads[0], prep)
            occlusion = await run_occlusion(
                model,
                image,
                grid,
                options.class_,
                options.fill,
                still_loaded=lambda: _loaded(registry, model),
                executor=slots.executor,
            )
    except ExplainError as error:
        raise APIError(422, error.code, str(error)) from None
    except ExplainBusyError as error:
        raise APIError(429, error.code, str(error), {"Retry-After": RETRY_AFTER_S}) from None
    png_only = wants_png(request)
    png = None
    if options.overlay or png_only:  # drawing it is background work too
        loop = asyncio.get_running_loop()
        png = await loop.run_in_executor(slots.executor, overlay_png, image, prep, occlusion.drops, grid)
    if png is not None and png_only:
        return Response(png, media_type="image/png")
    labels = model.spec.labels
    return ExplainResponse(
        model=model_ref(model),
        file=uploads[0].filename,
        method="occlusion",
        target=Prediction(label=labels[occlusion.class_index], index=occlusion.class_index, score=occlusion.score),
        predictions=[Prediction(label=labels[i], index=i, score=p) for i, p in occlusion.top(options.top_k)],
        grid=grid_info(grid, options.fill),
        drops=occlusion.drops.tolist(),
        forward_passes=1 + grid.positions,
        overlay=f"data:image/png;base64,{base64.b64encode(png).decode()}" if png is not None else None,
    )


def _loaded(registry: ModelRegistry, model: LoadedModel) -> bool:
    return registry.snapshot.get(model.name, {}).get(model.version) is model


def grid_info(grid: OcclusionGrid, fill: Fill) -> OcclusionGridInfo:
    return OcclusionGridInfo(
        rows=grid.rows,
        cols=grid.cols,
        patch=grid.patch,
        stride=grid.stride,
        crop_size=grid.crop_size,
        offsets=list(grid.offsets),
        fill=fill,
    )


@router.post("/explain", response_model=ExplainResponse, **ANSWERS)
async def explain_default(
    request: Request, services: ServicesDep, slots: ExplainSlotsDep, options: ExplainOptionsDep,
    version: VersionQuery = None,
) -> ExplainResponse | Response:  # fmt: skip
    """Where the default model found its evidence for a class in one image: occlusion sensitivity."""
    return await _explain(request, services, slots, None, version, options)


@router.post("/models/{name}/explain", response_model=ExplainResponse, **ANSWERS)
async def explain_image(
    name: str, request: Request, services: ServicesDep, slots: ExplainSlotsDep, options: ExplainOptionsDep,
    version: VersionQuery = None,
) -> ExplainResponse | Response:  # fmt: skip
    """Where the named model found its evidence for a class in one image: occlusion sensitivity."""
    return await _explain(request, services, slots, name, version, options)

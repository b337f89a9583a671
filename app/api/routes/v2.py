"""The Open Inference Protocol's (KServe v2) server and model endpoints: metadata, liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app import __version__
from app.api.deps import RegistryDep
from app.api.oip.schemas import (
    ModelMetadata,
    ModelReady,
    ProtocolErrorResponse,
    ServerLive,
    ServerMetadata,
    ServerReady,
)
from app.api.oip.signature import model_metadata
from app.api.protocols import V2_PREFIX
from app.engine.model import LoadedModel
from app.engine.registry import ModelRegistry, VersionNotFoundError

TAG = "open inference protocol (v2)"
EXTENSIONS = ["binary_tensor_data", "classification"]
PROTOCOL_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ProtocolErrorResponse} for status in (400, 404, 413, 415, 500, 503)
}
METADATA_ERRORS: dict[int | str, dict[str, Any]] = {404: PROTOCOL_ERRORS[404]}

router = APIRouter(prefix=V2_PREFIX, tags=[TAG])


def find_model(registry: ModelRegistry, name: str, version: str | None) -> LoadedModel:
    """The model a v2 path names; the version, a string in the protocol, is one of our version numbers."""
    if version is None:
        return registry.get(name)
    if not (version.isascii() and version.isdigit()):
        registry.get(name)  # an unknown model is reported as such
        loaded = sorted(registry.snapshot.get(name, {}))
        raise VersionNotFoundError(f"{name} has no version {version!r}: versions are whole numbers; loaded: {loaded}")
    return registry.get(name, int(version))


@router.get("", response_model=ServerMetadata)
async def read_server_metadata() -> ServerMetadata:
    """The server's name, version and protocol extensions."""
    return ServerMetadata(name="imgclf", version=__version__, extensions=EXTENSIONS)


@router.get("/health/live", response_model=ServerLive)
async def read_server_liveness() -> ServerLive:
    """The process is up and answering (a Kubernetes liveness probe)."""
    return ServerLive(live=True)


@router.get("/health/ready", response_model=ServerReady, responses={503: {"model": ServerReady}})
async def read_server_readiness(registry: RegistryDep) -> ServerReady | JSONResponse:
    """Ready when the default model is loaded (a Kubernetes readiness probe); 503 until then."""
    if registry.ready:
        return ServerReady(ready=True)
    return JSONResponse(ServerReady(ready=False).model_dump(), status_code=503)


def _metadata(registry: ModelRegistry, name: str, version: str | None) -> ModelMetadata:
    return model_metadata(find_model(registry, name, version), sorted(registry.snapshot.get(name, {})))


@router.get("/models/{name}", response_model=ModelMetadata, response_model_exclude_none=True, responses=METADATA_ERRORS)
async def read_model_metadata(name: str, registry: RegistryDep) -> ModelMetadata:
    """The model's inputs and outputs (datatypes, shapes with -1 for the batch) and its loaded versions."""
    return _metadata(registry, name, None)


@router.get(
    "/models/{name}/versions/{version}",
    response_model=ModelMetadata,
    response_model_exclude_none=True,
    responses=METADATA_ERRORS,
)
async def read_model_version_metadata(name: str, version: str, registry: RegistryDep) -> ModelMetadata:
    """One loaded version's inputs and outputs."""
    return _metadata(registry, name, version)


@router.get("/models/{name}/ready", response_model=ModelReady, responses=METADATA_ERRORS)
async def read_model_readiness(name: str, registry: RegistryDep) -> ModelReady:
    """200 when the model is loaded and serving; 404 when it is not."""
    return ModelReady(name=find_model(registry, name, None).name, ready=True)


@router.get("/models/{name}/versions/{version}/ready", response_model=ModelReady, responses=METADATA_ERRORS)
async def read_model_version_readiness(name: str, version: str, registry: RegistryDep) -> ModelReady:
    """200 when that version is loaded and serving; 404 when it is not."""
    return ModelReady(name=find_model(registry, name, version).name, ready=True)

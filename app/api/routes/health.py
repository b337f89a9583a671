"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import RegistryDep
from app.api.errors import APIError
from app.api.schemas import ErrorResponse, Health

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=Health)
async def read_liveness() -> Health:
    """The process is up and answering."""
    return Health(status="alive")


@router.get("/ready", response_model=Health, responses={503: {"model": ErrorResponse}})
async def read_readiness(registry: RegistryDep) -> Health:
    """Ready when the default model is loaded and can serve; 503 until then."""
    if not registry.ready:
        raise APIError(503, "not_ready", "no default model is loaded yet; see /v1/models and the server log")
    return Health(status="ready", models={name: sorted(v) for name, v in registry.snapshot.items()})

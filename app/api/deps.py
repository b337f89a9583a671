"""Shared dependencies of the routes, as ``Annotated`` aliases."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Query, Request

from app.api.errors import APIError
from app.config import Settings
from app.engine.inference import InferencePipeline
from app.engine.metrics import Metrics
from app.engine.registry import ModelRegistry


@dataclass(frozen=True)
class Services:
    """Everything the lifespan builds; kept on ``app.state.services``."""

    settings: Settings
    metrics: Metrics
    registry: ModelRegistry
    pipeline: InferencePipeline


# The dependencies are ``async def`` although they never await: FastAPI runs a plain ``def`` dependency on its
# thread pool, which costs every request two thread hand-offs for a dictionary lookup.


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_settings(services: ServicesDep) -> Settings:
    return services.settings


async def get_registry(services: ServicesDep) -> ModelRegistry:
    return services.registry


async def get_pipeline(services: ServicesDep) -> InferencePipeline:
    return services.pipeline


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
PipelineDep = Annotated[InferencePipeline, Depends(get_pipeline)]


def check_top_k(top_k: int, settings: Settings) -> None:
    """A 422 for a ``top_k`` over the server's cap, naming the setting that raises it."""
    if top_k > settings.max_top_k:
        raise APIError(
            422,
            "invalid_parameter",
            f"top_k: must be at most {settings.max_top_k}; the server's max_top_k setting "
            f"(environment variable IMGCLF_MAX_TOP_K) raises the cap",
        )


VersionQuery = Annotated[int | None, Query(ge=1, description="Model version; the newest loaded version when omitted.")]


async def require_api_key(
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header(description="The key set in IMGCLF_API_KEY.")] = None,
) -> None:
    """Admin endpoints need the configured key; with no key configured they are off altogether."""
    if settings.api_key is None or not settings.api_key.get_secret_value():
        raise APIError(403, "admin_disabled", "admin endpoints are off; set IMGCLF_API_KEY to enable them")
    expected = settings.api_key.get_secret_value().encode()
    if x_api_key is None or not secrets.compare_digest(x_api_key.encode(), expected):
        raise APIError(401, "unauthorized", "missing or wrong X-API-Key header", {"WWW-Authenticate": "ApiKey"})


AdminDep = Depends(require_api_key)

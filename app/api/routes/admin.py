"""Operations that change the server's state; each needs the API key (and is off without one)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from app.api.deps import AdminDep, RegistryDep
from app.api.schemas import ErrorResponse, FailedLoad, ModelRef, ReloadReport

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[AdminDep])


@router.post(
    "/reload",
    response_model=ReloadReport,
    responses={status: {"model": ErrorResponse} for status in (401, 403, 422)},
)
async def reload_models(registry: RegistryDep) -> ReloadReport:
    """Rescan the models folder now: load new versions, unload removed ones, report refused bundles and those
    still being copied."""
    report = await asyncio.to_thread(registry.refresh)
    return ReloadReport(
        loaded=[ModelRef(name=n, version=v) for n, v in report.loaded],
        unloaded=[ModelRef(name=n, version=v) for n, v in report.unloaded],
        failed=[FailedLoad(name=n, version=v, error=e) for n, v, e in report.failed],
        waiting=[ModelRef(name=n, version=v) for n, v in report.waiting],
    )

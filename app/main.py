"""The app factory. Models are loaded in the lifespan, never at import, so tests and workers stay cheap to create."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from app import __version__
from app.api.body_limit import BodyLimitMiddleware
from app.api.deps import Services
from app.api.errors import install_error_handlers
from app.api.metrics_middleware import MetricsMiddleware
from app.api.query import reject_unknown_query
from app.api.routes import admin, explain, health, inference, metrics, models, v2, v2_infer
from app.api.shedding import SheddingMiddleware
from app.api.web import install_web
from app.config import Settings
from app.engine.explain import ExplainSlots
from app.engine.inference import InferencePipeline
from app.engine.metrics import Metrics
from app.engine.registry import ModelRegistry
from modelspec import remove_stale_temp_dirs

logger = logging.getLogger(__name__)


async def watch_models(registry: ModelRegistry, interval: float) -> None:
    """Rescan the models folder every ``interval`` seconds (loading happens on a worker thread)."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(registry.refresh)
        except Exception:
            logger.exception("scanning the models folder failed; will retry")


ROUTERS = (
    inference.router,
    explain.router,
    models.router,
    health.router,
    admin.router,
    metrics.router,
    v2.router,
    v2_infer.router,
)


def shed_routes() -> list[BaseRoute]:
    """The routes whose requests wait for their model's slot at the edge (``app.api.shedding``)."""
    shed = {*inference.SHED, *v2_infer.SHED}
    return [route for router in ROUTERS for route in router.routes if getattr(route, "endpoint", None) in shed]


def read_route_sources() -> None:
    """Read the endpoints' source files now: FastAPI looks up each endpoint's file and line (for its error context)
    on the endpoint's first request, and reading the file then cost that request 5-7 ms (measured)."""
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute):
                with contextlib.suppress(OSError, TypeError):
                    inspect.getsourcelines(route.endpoint)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app_metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(remove_stale_temp_dirs, settings.models_dir)  # litter of killed bundle writers
        registry = ModelRegistry(settings, app_metrics)  # each model is warmed up as it loads
        report = await asyncio.to_thread(registry.refresh)
        if not report.loaded:
            logger.warning("no model loaded from %s; readiness stays 503 until one appears", settings.models_dir)
        pipeline = InferencePipeline(settings, app_metrics)
        if settings.warmup:  # the request path around the models
            await pipeline.warm_up()
            read_route_sources()
        app.state.services = Services(settings=settings, metrics=app_metrics, registry=registry, pipeline=pipeline)
        watcher = (
            asyncio.create_task(watch_models(registry, settings.watch_interval)) if settings.watch_interval else None
        )
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await asyncio.to_thread(registry.close)
            pipeline.close()

    app = FastAPI(
        title="imgclf",
        version=__version__,
        summary="Image classification: top-k labels, embeddings and model metadata over HTTP.",
        lifespan=lifespan,
        docs_url=None,  # served by app.api.web from local copies instead of a CDN
        redoc_url=None,
    )
    app.state.metrics = app_metrics
    app.state.explain_slots = ExplainSlots(settings.explain_concurrency)
    install_error_handlers(app)
    for router in ROUTERS:  # the API's routes refuse query parameters they do not declare
        app.include_router(router, dependencies=[Depends(reject_unknown_query)])
    # The last middleware added runs first: metrics see every response, the body limit guards the routes, and
    # requests to the inference routes wait for their model's slot before FastAPI handles them.
    app.add_middleware(SheddingMiddleware, routes=shed_routes())
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, body_timeout=settings.body_timeout)
    app.add_middleware(MetricsMiddleware, metrics=app_metrics)
    install_web(app, settings)  # the page, the offline API docs, CORS (outermost)
    return app

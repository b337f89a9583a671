"""What a browser gets: the page at ``/`` (``app/static``), the API docs with their assets served from here (no
CDN, so they work air-gapped), and CORS for front-ends served from other origins.

FastAPI's own ``/docs`` and ``/redoc`` load Swagger UI and ReDoc from a CDN; they are turned off in the app factory
and replaced here by the same pages pointing at the copies the ``fastapi-offline`` package ships (MIT; Swagger UI
is Apache-2.0, ReDoc MIT). ReDoc's bundle would still fetch the logo of its "API docs by Redocly" credit from
its CDN: the copy served here has that one URL replaced by an empty inline image, so no request leaves the machine.
"""

from __future__ import annotations

import functools
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from app.config import Settings

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
DOCS_ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
DOCS_ASSETS_URL = "/docs-assets"
REDOC_CREDIT_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
EMPTY_IMAGE = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"

page_router = APIRouter(include_in_schema=False)
docs_router = APIRouter(include_in_schema=False)


@page_router.get("/")
async def read_page() -> FileResponse:
    """The page: pick a model, drop images, see the top-k, the heatmaps and the model card."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


@docs_router.get("/docs")
async def read_swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - Swagger UI",
        oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
        swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
        # No validator badge: Swagger UI would fetch it from validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )


@docs_router.get("/docs/oauth2-redirect")
async def read_swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@functools.cache
def _offline_redoc_bundle() -> bytes:
    bundle = (DOCS_ASSETS_DIR / "redoc.standalone.js").read_text(encoding="utf-8")
    return bundle.replace(REDOC_CREDIT_LOGO, EMPTY_IMAGE).encode()


@docs_router.get(f"{DOCS_ASSETS_URL}/redoc.standalone.js")
async def read_redoc_bundle() -> Response:
    """ReDoc without its one CDN request (declared before the assets' mount, so it wins)."""
    return Response(_offline_redoc_bundle(), media_type="text/javascript")


@docs_router.get("/redoc")
async def read_redoc(request: Request) -> HTMLResponse:
    root = _root(request)
    return get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
        with_google_fonts=False,
    )


def install_web(app: FastAPI, settings: Settings) -> None:
    """The offline API docs always; the page unless ``IMGCLF_UI=false``; CORS for ``IMGCLF_CORS_ORIGINS``.

    Call it after the other middleware is added: CORS then runs first, so error responses (a 413 from the body
    limit included) carry its headers and a front-end on another origin can read them.
    """
    app.include_router(docs_router)
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")
    if settings.ui:
        app.include_router(page_router)
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "Accept", "X-API-Key"],
            expose_headers=["Retry-After"],
        )

"""``python -m app``: serve the models folder with uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import uvicorn

from app.api.server import PROTOCOL_PATH, HttpLimits, protocol_class
from app.config import Settings


def export_overrides(overrides: Mapping[str, Any], environ: MutableMapping[str, str] = os.environ) -> None:
    """Put command-line settings into the environment: uvicorn's worker processes build their settings (and the
    HTTP protocol its limits) from the environment alone."""
    for key, value in overrides.items():
        environ[f"IMGCLF_{key.upper()}"] = str(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="Serve image-classification model bundles.")
    parser.add_argument("--host", help="interface to listen on (IMGCLF_HOST)")
    parser.add_argument("--port", type=int, help="port to listen on (IMGCLF_PORT)")
    parser.add_argument("--models-dir", help="bundles folder (IMGCLF_MODELS_DIR)")
    args = parser.parse_args(argv)
    overrides = {key: value for key, value in vars(args).items() if value is not None}
    settings = Settings(**overrides)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    common = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": settings.access_log,
    }
    if settings.workers > 1:
        # Each worker process builds its own app (and loads its own models) from the same environment.
        export_overrides(overrides)
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            workers=settings.workers,
            http=PROTOCOL_PATH,
            **common,  # type: ignore[arg-type]
        )
    else:
        from app.main import create_app

        http = protocol_class(HttpLimits.from_settings(settings))
        uvicorn.run(create_app(settings), http=http, **common)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

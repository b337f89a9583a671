"""``python -m app``: serve the models folder with uvicorn."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import uvicorn

from app.config import Settings


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
        uvicorn.run("app.main:create_app", factory=True, workers=settings.workers, **common)  # type: ignore[arg-type]
    else:
        from app.main import create_app

        uvicorn.run(create_app(settings), **common)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The docs test's world: a scratch folder with the sample photos and a models folder, and the real service on it."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# The one line that changes when the live-server helper moves (the app's tests keep it).
from tests.app.live_server import live_server

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DocsWorld:
    """Where the documented commands run (``cwd``), with what environment, against which service (``url``)."""

    cwd: Path
    url: str
    env: dict[str, str]


def command_env() -> dict[str, str]:
    """A shell after ``. .venv/bin/activate``: the interpreter's ``bin`` first on the PATH; this checkout's packages
    first on the import path (the console scripts of a shared virtual environment may point at another one)."""
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONPATH=str(ROOT))
    env.pop("IMGCLF_MODELS_DIR", None)
    env.pop("IMGCLF_DEFAULT_MODEL", None)
    env["COLUMNS"] = "200"
    return env


@pytest.fixture(scope="session")
def docs_world(default_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsWorld]:
    """The README's world after ``make install``, ``. .venv/bin/activate`` and ``make run``: the default model
    served from ``models/`` of the folder the commands run in, new versions picked up within half a second."""
    import skimage.data

    cwd = tmp_path_factory.mktemp("docs-world")
    shutil.copytree(default_models_dir, cwd / "models")
    for name in ("chelsea", "coffee"):
        Image.fromarray(np.asarray(getattr(skimage.data, name)())).save(cwd / f"{name}.jpg")
    with live_server(
        cwd / "models", default_model="efficientnet-lite0", watch_interval=0.5, reload_settle_seconds=0.5
    ) as live:
        yield DocsWorld(cwd, f"localhost:{live.port}", command_env())

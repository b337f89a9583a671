from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from modelspec import Bundle
from tests.app.trust_bundle import TrustedModels, make_trusted_models

ClientFactory = Callable[..., TestClient]


@pytest.fixture
def models_dir(tiny_models_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of the tiny models folder (``tiny`` version 1)."""
    target = tmp_path / "models"
    shutil.copytree(tiny_models_dir, target)
    return target


def settings_for(models_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "models_dir": models_dir,
        "default_model": None,
        "watch_interval": 0,
        "intra_op_threads": 1,
        "decode_threads": 2,
        "max_batch_size": 8,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def make_client(models_dir: Path) -> Iterator[ClientFactory]:
    """Start the app (lifespan included) on ``models_dir`` with the given settings; stopped after the test."""
    stack: list[TestClient] = []

    def start(directory: Path | None = None, **overrides: Any) -> TestClient:
        client = TestClient(create_app(settings_for(directory or models_dir, **overrides)))
        client.__enter__()
        stack.append(client)
        return client

    yield start
    for client in reversed(stack):
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()


@pytest.fixture(scope="session")
def trusted_models(tmp_path_factory: pytest.TempPathFactory) -> TrustedModels:
    """A models folder with ``shapes`` (trust data fitted on real outputs) and ``plain`` (the same weights, none).
    Treat it as read-only."""
    return make_trusted_models(tmp_path_factory.mktemp("trusted-models"))


@pytest.fixture(scope="session")
def int8_bundle(digits_bundle: Bundle, digits_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """The trained digits bundle with an int8 graph within its bound (``digits`` version 1, alone in its folder)."""
    from tests.app.int8_bundle import quantised_copy

    return quantised_copy(digits_bundle, tmp_path_factory.mktemp("int8") / "models", digits_data / "test")

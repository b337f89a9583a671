"""The HTTP helper of scripts/docker-smoke.sh reads the service's real response shapes."""

from __future__ import annotations

import argparse
import importlib.util
from types import ModuleType

import pytest

from tests.deploy.conftest import ROOT


@pytest.fixture(scope="module")
def client() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docker_smoke_client", ROOT / "scripts/docker_smoke_client.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_top_predictions_of_a_predict_response(client: ModuleType) -> None:
    body = {
        "model": {"name": "efficientnet-lite0", "version": 1},
        "results": [
            {"file": None, "predictions": [{"label": "tabby", "index": 281, "score": 0.5}]},
            {"file": "b.jpg", "predictions": [{"label": "espresso", "index": 967, "score": 0.9}]},
        ],
    }
    assert client.top_predictions(body) == [{"label": "tabby", "index": 281, "score": 0.5}]
    assert client.top_predictions({"results": []}) == []


def test_seconds_since_a_docker_timestamp(client: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    # 2024-01-02T03:04:05Z is 1704164645 seconds after the epoch; Docker gives nanoseconds.
    args = argparse.Namespace(start="2024-01-02T03:04:05.250000123Z", end=1704164647.0)
    assert client.seconds_since(args) == 0
    assert capsys.readouterr().out.strip() == "1.75"

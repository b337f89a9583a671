"""The benchmark's requests are ones the service answers, with the same classes whichever protocol carries them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from scripts.bench.load import Request
from scripts.bench.serving.scenarios import ALSO, PRIMARY, V2_BINARY, V2_JSON
from tests.app.conftest import settings_for
from tests.app.images import JPEG
from tests.app.v2_helpers import outputs_of, parse_classes


def send(client: TestClient, request: Request) -> httpx.Response:
    headers = dict(request.headers)
    if request.content_type:
        headers["Content-Type"] = request.content_type
    return client.request(request.method, request.path, content=request.body, headers=headers)


@pytest.fixture(scope="module")
def client(tiny_models_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(tiny_models_dir, default_model="tiny"))) as client:
        yield client


def test_v2_scenarios_get_v1s_top_classes(client: TestClient) -> None:
    v1 = send(client, PRIMARY.request("tiny", JPEG)).json()["results"][0]["predictions"]
    for scenario in (V2_BINARY, V2_JSON):
        [row] = outputs_of(send(client, scenario.request("tiny", JPEG)))["probabilities"]
        assert [(index, label) for _, index, label in parse_classes(row)] == [(p["index"], p["label"]) for p in v1]


def test_the_binary_scenario_sends_binary_data_and_the_v2_scenarios_run_at_16_clients() -> None:
    binary = V2_BINARY.request("tiny", JPEG)
    assert dict(binary.headers)["Inference-Header-Content-Length"].isdigit()
    assert binary.body.endswith(JPEG) and V2_JSON.request("tiny", JPEG).content_type == "application/json"
    assert all(16 in scenario.concurrency for scenario in ALSO)
    assert V2_BINARY.target == 0.95 and "tritonclient" in V2_BINARY.description

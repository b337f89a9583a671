"""Real responses match the OpenAPI document the app publishes: what users and client generators read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.conftest import ClientFactory, settings_for
from tests.app.images import JPEG
from tests.app.openapi_check import assert_documented

GOOD_AND_BAD = {"files": [("file", ("good.jpg", JPEG)), ("file", ("notes.txt", b"not an image"))]}
RAW = {"content": JPEG, "headers": {"content-type": "image/jpeg"}}

# (method, documented path, real path, request arguments, expected status)
CASES: dict[str, tuple[str, str, str, dict[str, Any], int]] = {
    "predict, an answer and an error": ("post", "/v1/predict", "/v1/predict", GOOD_AND_BAD, 200),
    "predict a named model, raw body": ("post", "/v1/models/{name}/predict", "/v1/models/tiny/predict", RAW, 200),
    "features, an answer and an error": (
        "post",
        "/v1/features",
        "/v1/features?normalize=true",
        GOOD_AND_BAD,
        200,
    ),
    "features of a named model": ("post", "/v1/models/{name}/features", "/v1/models/tiny/features", RAW, 200),
    "models list": ("get", "/v1/models", "/v1/models", {}, 200),
    "model detail": ("get", "/v1/models/{name}", "/v1/models/tiny", {}, 200),
    "liveness": ("get", "/health/live", "/health/live", {}, 200),
    "readiness": ("get", "/health/ready", "/health/ready", {}, 200),
    "unknown model": ("post", "/v1/models/{name}/predict", "/v1/models/nope/predict", RAW, 404),
    "unknown version": ("get", "/v1/models/{name}", "/v1/models/tiny?version=9", {}, 404),
    "bad version": ("get", "/v1/models/{name}", "/v1/models/tiny?version=0", {}, 422),
    "bad top_k": ("post", "/v1/predict", "/v1/predict?top_k=0", RAW, 422),
    "not an image": ("post", "/v1/features", "/v1/features", {"files": {"file": ("a.txt", b"text")}}, 415),
    "admin off": ("post", "/v1/admin/reload", "/v1/admin/reload", {}, 403),
}


@pytest.fixture(scope="module")
def served(tiny_models_dir: Path) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    """One server for the module (the cases only read), and the document it publishes."""
    with TestClient(create_app(settings_for(tiny_models_dir))) as client:
        yield client, client.get("/openapi.json").json()


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_responses_match_the_openapi_document(served: tuple[TestClient, dict[str, Any]], case: str) -> None:
    client, openapi = served
    method, documented_path, path, arguments, status = CASES[case]
    response = client.request(method.upper(), path, **arguments)
    assert response.status_code == status, response.text
    assert_documented(openapi, method, documented_path, response)


def test_not_ready_matches_the_openapi_document(make_client: ClientFactory, tmp_path: Path) -> None:
    client = make_client(tmp_path / "empty")
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert_documented(client.get("/openapi.json").json(), "get", "/health/ready", response)


def test_the_check_finds_an_undocumented_field(served: tuple[TestClient, dict[str, Any]]) -> None:
    client, openapi = served
    tampered = httpx.Response(200, json={**client.get("/health/live").json(), "uptime": 3})
    with pytest.raises(AssertionError, match="uptime"):
        assert_documented(openapi, "get", "/health/live", tampered)

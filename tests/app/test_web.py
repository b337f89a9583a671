"""What the app serves to browsers besides the API: the page, the offline API docs, and CORS."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from app.api.web import STATIC_DIR
from modelspec import Bundle
from tests.app.conftest import ClientFactory


def test_the_page_and_its_assets_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="(static/[^"]+)"', page.text)
    assert "static/main.js" in assets and "static/style.css" in assets
    for asset in assets:
        assert client.get("/" + asset).status_code == 200, asset
    # Every module the page imports is served as well (relative imports between the page's modules).
    for module in STATIC_DIR.glob("*.js"):
        for imported in re.findall(r'from "\./([^"]+)"', module.read_text()):
            assert (STATIC_DIR / imported).is_file(), f"{module.name} imports a missing {imported}"
            assert client.get(f"/static/{imported}").headers["content-type"].startswith("text/javascript")


def test_nothing_is_loaded_from_elsewhere() -> None:
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        assert not re.search(r"(?:src|href|import|url)\s*[=(]?\s*[\"']?https?://", text), path.name


def test_the_page_can_be_turned_off(make_client: ClientFactory) -> None:
    client = make_client(ui=False)
    assert client.get("/").status_code == 404
    assert client.get("/static/main.js").status_code == 404
    assert client.get("/health/live").status_code == 200
    assert client.get("/docs").status_code == 200  # the API docs stay


def test_api_docs_use_local_assets_only(client: TestClient) -> None:
    for path in ("/docs", "/redoc"):
        html = client.get(path).text
        urls = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert urls, path
        assert all(url.startswith("/docs-assets/") for url in urls), (path, urls)
        for url in urls:
            assert client.get(url).status_code == 200, url
    assert "fonts.googleapis.com" not in client.get("/redoc").text
    assert client.get("/openapi.json").json()["paths"]["/v1/explain"]["post"]


def test_cors_is_off_by_default(client: TestClient) -> None:
    response = client.get("/v1/models", headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_lets_the_configured_origins_in(make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGCLF_CORS_ORIGINS", "https://a.example, https://b.example")
    client = make_client()
    preflight = client.options(
        "/v1/predict",
        headers={
            "Origin": "https://b.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://b.example"
    simple = client.get("/v1/models", headers={"Origin": "https://a.example"})
    assert simple.headers["access-control-allow-origin"] == "https://a.example"
    # Errors carry the header too, so a front-end can read the message.
    error = client.post("/v1/predict", headers={"Origin": "https://a.example"})
    assert error.status_code == 400 and error.headers["access-control-allow-origin"] == "https://a.example"
    other = client.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_a_trained_bundle_carries_the_curves_its_card_draws(digits_bundle: Bundle) -> None:
    metrics = digits_bundle.spec.metrics
    history = metrics["history"]
    assert [row["epoch"] for row in history] == list(range(1, metrics["epochs_trained"] + 1))
    for row in history:
        assert {"train_loss", "val_loss", "train_accuracy", "val_accuracy"} <= set(row)
    assert history[-1]["train_loss"] < history[0]["train_loss"]

"""End to end: a model fitted by the training CLI, served over HTTP, classifies held-out digits."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.main import create_app
from modelspec import Bundle
from tests.app.conftest import settings_for


def test_service_classifies_held_out_digits_with_a_fitted_bundle(digits_bundle: Bundle, digits_data: Path) -> None:
    models_dir = digits_bundle.path.parent.parent
    files = sorted((digits_data / "test").glob("*/*.png"))
    assert len(files) == 450
    with TestClient(create_app(settings_for(models_dir))) as client:
        detail = client.get("/v1/models/digits").json()
        assert detail["labels"] == [str(d) for d in range(10)]
        assert detail["metrics"]["val"]["accuracy"] > 0.85
        assert detail["provenance"]["dataset_fingerprint"]
        correct = 0
        for start in range(0, len(files), 32):  # several images per request, as a client batching its own work
            chunk = files[start : start + 32]
            upload = [("file", (f"{p.parent.name}/{p.name}", p.read_bytes(), "image/png")) for p in chunk]
            response = client.post("/v1/predict", files=upload, params={"top_k": 1})
            assert response.status_code == 200, response.text
            for path, result in zip(chunk, response.json()["results"], strict=True):
                correct += result["predictions"][0]["label"] == path.parent.name
    assert correct / len(files) > 0.85  # chance is 0.10

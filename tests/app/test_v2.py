"""The Open Inference Protocol (v2) with a tiny model: metadata, both inputs, both outputs, the classification and
binary tensor data extensions, errors in the protocol's shape, limits, and one pipeline shared with /v1."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

import app.engine.model
from app.config import Settings
from app.engine.backends import Backend, create_backend
from app.main import create_app
from modelspec import Bundle
from modelspec.decode import load_input
from tests.app.conftest import ClientFactory, settings_for
from tests.app.images import JPEG, png_header_only, shape_image
from tests.app.openapi_check import assert_documented
from tests.app.v2_helpers import (
    b64,
    binary_body,
    binary_images_request,
    bytes_elements,
    images_input,
    outputs_of,
    parse_classes,
)
from tests.app.wrapped_backend import GatedBackend
from tests.conftest import TINY_LABELS, encode, tiny_spec

SQUARE = encode(shape_image("square", (40, 56)), "PNG")
INFER = "/v2/models/tiny/infer"


@pytest.fixture(scope="module")
def client(tiny_models_dir: Path) -> Iterator[TestClient]:
    """One server for the tests that only read (this module's ``client``); the others start their own."""
    with TestClient(create_app(settings_for(tiny_models_dir))) as served:
        yield served


def infer(client: TestClient, document: dict[str, Any], path: str = INFER) -> dict[str, Any]:
    return outputs_of(client.post(path, json=document))


def v1_scores(client: TestClient, *images: bytes) -> np.ndarray:
    """/v1/predict's probabilities of every class, by class index, one row per image."""
    files = [("file", (f"{i}.img", image)) for i, image in enumerate(images)]
    results = client.post("/v1/predict", files=files, params={"top_k": len(TINY_LABELS)}).json()["results"]
    rows = np.zeros((len(images), len(TINY_LABELS)), dtype=np.float32)
    for row, result in zip(rows, results, strict=True):
        for prediction in result["predictions"]:
            row[prediction["index"]] = prediction["score"]
    return rows


def v1_embeddings(client: TestClient, *images: bytes) -> np.ndarray:
    files = [("file", (f"{i}.img", image)) for i, image in enumerate(images)]
    return np.asarray([r["embedding"] for r in client.post("/v1/features", files=files).json()["results"]])


def assert_protocol_error(response: Any, status: int, fragment: str) -> str:
    """The protocol's error document, ``{"error": "<message>"}`` and nothing else, with ``fragment`` in it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str), body
    assert fragment in body["error"], body["error"]
    message: str = body["error"]
    return message


# Server and model endpoints


def test_server_metadata_liveness_and_readiness(client: TestClient, make_client: ClientFactory, tmp_path: Path) -> None:
    metadata = client.get("/v2").json()
    assert metadata["name"] == "imgclf" and metadata["version"]
    assert {"binary_tensor_data", "classification"} <= set(metadata["extensions"])
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    empty = make_client(tmp_path / "empty")
    assert empty.get("/v2/health/live").status_code == 200
    not_ready = empty.get("/v2/health/ready")
    assert not_ready.status_code == 503 and not_ready.json() == {"ready": False}


@pytest.mark.parametrize("path", ["/v2/models/tiny", "/v2/models/tiny/versions/1"])
def test_model_metadata_describes_inputs_and_outputs(client: TestClient, path: str) -> None:
    metadata = client.get(path).json()
    assert metadata["name"] == "tiny" and metadata["versions"] == ["1"] and metadata["platform"] == "onnx_onnxv1"
    inputs = {tensor["name"]: tensor for tensor in metadata["inputs"]}
    outputs = {tensor["name"]: tensor for tensor in metadata["outputs"]}
    assert (inputs["encoded_images"]["datatype"], inputs["encoded_images"]["shape"]) == ("BYTES", [-1])
    assert inputs["encoded_images"]["parameters"]["content_type"] == "base64"  # how BYTES travel in JSON
    assert (inputs["images"]["datatype"], inputs["images"]["shape"]) == ("FP32", [-1, 3, 32, 32])
    assert "centre crop 32" in inputs["images"]["parameters"]["description"]
    assert (outputs["probabilities"]["datatype"], outputs["probabilities"]["shape"]) == ("FP32", [-1, 3])
    assert (outputs["embedding"]["datatype"], outputs["embedding"]["shape"]) == ("FP32", [-1, 84])


def test_model_readiness(client: TestClient) -> None:
    assert client.get("/v2/models/tiny/ready").json() == {"name": "tiny", "ready": True}
    assert client.get("/v2/models/tiny/versions/1/ready").json() == {"name": "tiny", "ready": True}
    assert_protocol_error(client.get("/v2/models/tiny/versions/2/ready"), 404, "loaded versions: [1]")
    assert_protocol_error(client.get("/v2/models/nope/ready"), 404, "available: ['tiny']")
    assert_protocol_error(client.get("/v2/models/nope"), 404, "no model named 'nope'")
    assert_protocol_error(client.get("/v2/models/tiny/versions/latest"), 404, "versions are whole numbers")


# Inference


def test_json_request_answers_as_v1_does(client: TestClient) -> None:
    document = {"id": "req-7", "inputs": [images_input(JPEG, SQUARE)]}
    response = client.post(INFER, json=document)
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("tiny", "1", "req-7")
    outputs = outputs_of(response)
    assert outputs["probabilities"].shape == (2, 3) and outputs["embedding"].shape == (2, 84)
    np.testing.assert_allclose(outputs["probabilities"], v1_scores(client, JPEG, SQUARE), rtol=1e-6)
    np.testing.assert_allclose(outputs["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(outputs["embedding"], v1_embeddings(client, JPEG, SQUARE), rtol=1e-6, atol=1e-7)


def test_binary_request_and_binary_outputs_equal_json(client: TestClient) -> None:
    response = client.post(INFER, **binary_images_request(JPEG, SQUARE))
    assert response.headers["content-type"] == "application/octet-stream"
    binary = outputs_of(response)
    as_json = infer(client, {"inputs": [images_input(JPEG, SQUARE)]})
    np.testing.assert_array_equal(binary["probabilities"], as_json["probabilities"])
    np.testing.assert_array_equal(binary["embedding"], as_json["embedding"])


def test_outputs_can_be_chosen_and_mixed_binary_and_json(client: TestClient) -> None:
    outputs = [{"name": "embedding", "parameters": {"binary_data": True}}]
    chosen = outputs_of(client.post(INFER, **binary_images_request(JPEG, outputs=outputs)))
    assert list(chosen) == ["embedding"]
    mixed = [{"name": "embedding", "parameters": {"binary_data": True}}, {"name": "probabilities"}]
    response = client.post(INFER, json={"inputs": [images_input(JPEG)], "outputs": mixed})
    assert "inference-header-content-length" in response.headers  # the embedding's binary data follows the JSON
    both = outputs_of(response)
    np.testing.assert_array_equal(both["embedding"], chosen["embedding"])
    assert both["probabilities"].shape == (1, 3)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_classification_extension_gives_v1s_top_k(client: TestClient, binary: bool) -> None:
    outputs = [{"name": "probabilities", "parameters": {"classification": 2, "binary_data": binary}}]
    request = binary_images_request(JPEG, SQUARE, outputs=outputs)
    classes = outputs_of(client.post(INFER, **request))["probabilities"]
    assert len(classes) == 2 and all(len(row) == 2 for row in classes)
    v1 = client.post("/v1/predict", files=[("file", ("a", JPEG)), ("file", ("b", SQUARE))], params={"top_k": 2})
    for row, result in zip(classes, v1.json()["results"], strict=True):
        parsed = parse_classes(row)
        assert [(index, label) for _, index, label in parsed] == [
            (p["index"], p["label"]) for p in result["predictions"]
        ]
        np.testing.assert_allclose([s for s, _, _ in parsed], [p["score"] for p in result["predictions"]], rtol=1e-6)


def test_classification_count_is_capped_at_the_number_of_classes(client: TestClient) -> None:
    outputs = [{"name": "probabilities", "parameters": {"classification": 50}}]
    [row] = infer(client, {"inputs": [images_input(JPEG)], "outputs": outputs})["probabilities"]
    assert sorted(label for _, _, label in parse_classes(row)) == sorted(TINY_LABELS)


def test_encoded_images_may_have_shape_n_by_1(client: TestClient) -> None:
    flat = infer(client, {"inputs": [images_input(JPEG, SQUARE)]})
    column = images_input(JPEG, SQUARE, shape=[2, 1])
    column["data"] = [[value] for value in column["data"]]
    np.testing.assert_array_equal(infer(client, {"inputs": [column]})["probabilities"], flat["probabilities"])


def preprocessed(*images: bytes) -> np.ndarray:
    return np.stack([load_input(image, tiny_spec().preprocessing) for image in images])


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_preprocessed_fp32_input_equals_encoded_images(client: TestClient, binary: bool) -> None:
    array = preprocessed(JPEG, SQUARE)
    tensor: dict[str, Any] = {"name": "images", "datatype": "FP32", "shape": list(array.shape)}
    if binary:
        raw = array.astype("<f4").tobytes()
        tensor["parameters"] = {"binary_data_size": len(raw)}
        response = client.post(INFER, **binary_body({"inputs": [tensor]}, raw))
    else:
        tensor["data"] = array.ravel().tolist()
        response = client.post(INFER, json={"inputs": [tensor]})
    from_arrays = outputs_of(response)
    from_files = infer(client, {"inputs": [images_input(JPEG, SQUARE)]})
    np.testing.assert_allclose(from_arrays["probabilities"], from_files["probabilities"], rtol=1e-6)
    np.testing.assert_allclose(from_arrays["embedding"], from_files["embedding"], rtol=1e-5, atol=1e-6)


def test_a_version_can_be_named(client: TestClient) -> None:
    named = infer(client, {"inputs": [images_input(JPEG)]}, "/v2/models/tiny/versions/1/infer")
    np.testing.assert_array_equal(
        named["probabilities"], infer(client, {"inputs": [images_input(JPEG)]})["probabilities"]
    )
    response = client.post("/v2/models/tiny/versions/2/infer", json={"inputs": [images_input(JPEG)]})
    assert_protocol_error(response, 404, "tiny version 2 is not loaded")


def test_a_broken_image_fails_the_whole_request_naming_it(client: TestClient) -> None:
    """Per-image errors have no place in a tensor: v2 answers all or nothing; /v1 still answers image by image."""
    response = client.post(INFER, json={"inputs": [images_input(JPEG, b"not an image", SQUARE)]})
    message = assert_protocol_error(response, 400, "encoded_images[1]: the data is not an image")
    assert "all or nothing" in message
    v1 = client.post("/v1/predict", files=[("file", ("a", JPEG)), ("file", ("b", b"not an image"))]).json()
    assert "predictions" in v1["results"][0] and v1["results"][1]["error"]["code"] == "unsupported_image_format"


# Errors, in the protocol's shape


def tensor_case(
    outputs: list[dict[str, Any]] | None = None, parameters: dict[str, Any] | None = None, **changes: Any
) -> dict[str, Any]:
    """A JSON request for one JPEG, its input changed by ``changes``, with these outputs and parameters."""
    document: dict[str, Any] = {"inputs": [{**images_input(JPEG), **changes}]}
    if outputs is not None:
        document["outputs"] = outputs
    if parameters is not None:
        document["parameters"] = parameters
    return {"json": document}


def fp32_case(shape: list[int], data: list[Any]) -> dict[str, Any]:
    return {"json": {"inputs": [{"name": "images", "datatype": "FP32", "shape": shape, "data": data}]}}


def binary_case(binary_data_size: int, data: bytes) -> dict[str, Any]:
    parameters = {"binary_data_size": binary_data_size}
    tensor = {"name": "encoded_images", "datatype": "BYTES", "shape": [1], "parameters": parameters}
    return binary_body({"inputs": [tensor]}, data)


def raw_case(content: bytes, **headers: str) -> dict[str, Any]:
    return {"content": content, "headers": {name.replace("_", "-"): value for name, value in headers.items()}}


CLASSIFY = "classification"
TWO_INPUTS = {"json": {"inputs": [images_input(JPEG), {**images_input(JPEG), "name": "images", "datatype": "FP32"}]}}
ELEMENT = bytes_elements(JPEG)

# name -> (path, request, status, a fragment of the message)
ERROR_CASES: dict[str, tuple[str, dict[str, Any], int, str]] = {
    "unknown model": ("/v2/models/nope/infer", tensor_case(), 404, "no model named 'nope'"),
    "unknown version": ("/v2/models/tiny/versions/7/infer", tensor_case(), 404, "loaded versions: [1]"),
    "version not a number": ("/v2/models/tiny/versions/v1/infer", tensor_case(), 404, "whole numbers"),
    "malformed JSON": (INFER, raw_case(b'{"inputs": ['), 400, "not valid"),
    "empty body": (INFER, raw_case(b""), 400, "the body is empty"),
    "no inputs": (INFER, {"json": {"inputs": []}}, 400, "inputs"),
    "inputs not a list": (INFER, {"json": {"inputs": "x"}}, 400, "inputs"),
    "negative dimension": (INFER, tensor_case(shape=[-1]), 400, "shape"),
    "unknown input": (INFER, tensor_case(name="pixels"), 400, "no input named 'pixels'"),
    "two inputs": (INFER, TWO_INPUTS, 400, "send one input"),
    "wrong datatype": (INFER, tensor_case(datatype="FP32"), 400, "it takes BYTES"),
    "wrong rank": (INFER, tensor_case(shape=[1, 2]), 400, "it takes [N] or [N, 1]"),
    "no image": (INFER, tensor_case(shape=[0], data=[]), 400, "holds no image"),
    "fewer elements than the shape": (INFER, tensor_case(shape=[2]), 400, "needs 2 elements"),
    "not base64": (INFER, tensor_case(data=["not base64!"]), 400, "not valid base64"),
    "a number instead of a string": (INFER, tensor_case(data=[3]), 400, "is a int"),
    "not an image": (INFER, tensor_case(data=[b64(b"text")]), 400, "encoded_images[0]: the data is not an image"),
    "empty image": (INFER, tensor_case(data=[""]), 400, "encoded_images[0]: the image is empty"),
    "FP32 of another size": (INFER, fp32_case([1, 3, 16, 16], [0] * 768), 400, "tiny takes [-1, 3, 32, 32]"),
    "FP32 data short": (INFER, fp32_case([1, 3, 32, 32], [0.5] * 10), 400, "needs 3072 numbers"),
    "FP32 data not numbers": (INFER, fp32_case([1, 3, 32, 32], ["a"] * 3072), 400, "needs 3072 numbers"),
    "unknown output": (INFER, tensor_case([{"name": "logits"}]), 400, "no output named 'logits'"),
    "an output twice": (INFER, tensor_case([{"name": "embedding"}] * 2), 400, "requested once"),
    "classification of the embedding": (
        INFER,
        tensor_case([{"name": "embedding", "parameters": {CLASSIFY: 2}}]),
        400,
        "applies to 'probabilities'",
    ),
    "classification 0": (
        INFER,
        tensor_case([{"name": "probabilities", "parameters": {CLASSIFY: 0}}]),
        400,
        "from 1 to 100",
    ),
    "binary_data not a boolean": (INFER, tensor_case(parameters={"binary_data_output": "yes"}), 400, "true or false"),
    "header length past the body": (
        INFER,
        raw_case(b"{}", Inference_Header_Content_Length="99"),
        400,
        "the body has only 2 bytes",
    ),
    "header length not a number": (
        INFER,
        raw_case(b"{}", Inference_Header_Content_Length="ten"),
        400,
        "must be a number of bytes",
    ),
    "raw binary body": (INFER, raw_case(JPEG, Inference_Header_Content_Length="0"), 400, "not supported"),
    "binary data with no binary_data_size": (
        INFER,
        binary_body({"inputs": [images_input(JPEG)]}, b"extra"),
        400,
        "no binary_data_size",
    ),
    "binary_data_size smaller than the data": (INFER, binary_case(4, ELEMENT), 400, "declares binary_data_size 4"),
    "element longer than the data": (
        INFER,
        binary_case(10, ELEMENT[:10]),
        400,
        f"declares {len(JPEG)} bytes, but only 6 follow",
    ),
    "bytes left after the elements": (INFER, binary_case(len(ELEMENT) + 3, ELEMENT + b"!!!"), 400, "3 bytes are left"),
    "compressed body": (INFER, raw_case(b"\x1f\x8b", Content_Encoding="gzip"), 415, "uncompressed"),
    "unknown route": ("/v2/models/tiny/explain", tensor_case(), 404, "no route POST /v2/models/tiny/explain"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES), ids=list(ERROR_CASES))
def test_bad_requests_get_the_protocols_error_shape_and_status(client: TestClient, case: str) -> None:
    path, arguments, status, fragment = ERROR_CASES[case]
    assert_protocol_error(client.post(path, **arguments), status, fragment)
    assert client.post(INFER, json={"inputs": [images_input(JPEG)]}).status_code == 200  # still serving


def test_wrong_method_gets_the_protocols_error_shape(client: TestClient) -> None:
    assert_protocol_error(client.get(INFER), 405, "GET is not allowed on /v2/models/tiny/infer; use POST")


def test_v1_errors_keep_their_own_shape(client: TestClient) -> None:
    body = client.post("/v1/models/nope/predict", content=JPEG, headers={"content-type": "image/jpeg"}).json()
    assert body["error"]["code"] == "model_not_found" and "nope" in body["error"]["message"]


def test_limits_answer_413(make_client: ClientFactory) -> None:
    client = make_client(max_images_per_request=2, max_body_bytes=200_000, max_image_pixels=500_000)
    too_many = client.post(INFER, json={"inputs": [images_input(JPEG, JPEG, JPEG)]})
    assert_protocol_error(too_many, 413, "at most 2 images, not 3")
    too_many_arrays = {"name": "images", "datatype": "FP32", "shape": [3, 3, 32, 32], "data": [0.0] * 9216}
    assert_protocol_error(client.post(INFER, json={"inputs": [too_many_arrays]}), 413, "at most 2 images")
    huge = png_header_only(1000, 1000)
    assert_protocol_error(client.post(INFER, **binary_images_request(huge)), 413, "encoded_images[0]: the image is")
    body = binary_images_request(b"\xff" * 250_000)
    assert_protocol_error(client.post(INFER, **body), 413, "over the limit of 200,000 bytes")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while the body streams in
        yield body["content"][:150_000]
        yield body["content"][150_000:]

    streamed = client.post(INFER, content=chunks(), headers=body["headers"])
    assert_protocol_error(streamed, 413, "over the limit")


# One pipeline for both protocols


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> list[GatedBackend]:
    created: list[GatedBackend] = []

    def factory(settings: Settings, bundle: Bundle) -> Backend:
        created.append(GatedBackend(create_backend(settings, bundle)))
        return created[-1]

    monkeypatch.setattr(app.engine.model, "create_backend", factory)
    return created


def test_v1_and_v2_requests_arriving_together_share_a_batch(
    make_client: ClientFactory, gated: list[GatedBackend]
) -> None:
    client = make_client(inference_workers=1, max_batch_size=8)
    backend = gated[-1]
    batcher = client.app.state.services.registry.get("tiny").batcher  # type: ignore[attr-defined]
    backend.sizes.clear()
    backend.hold = lambda: batcher.pending >= 2  # the first batch runs once a v1 and a v2 request wait behind it

    def v1(image: bytes) -> np.ndarray:
        response = client.post(
            "/v1/predict", content=image, headers={"content-type": "image/jpeg"}, params={"top_k": 3}
        )
        return np.asarray(sorted((p["index"], p["score"]) for p in response.json()["results"][0]["predictions"]))

    def v2() -> dict[str, Any]:
        return outputs_of(client.post(INFER, **binary_images_request(JPEG, SQUARE)))

    with ThreadPoolExecutor(3) as pool:
        blocker = pool.submit(v1, JPEG)
        deadline = time.monotonic() + 10
        while backend.running == 0 and time.monotonic() < deadline:
            time.sleep(0.002)
        together_v2, together_v1 = pool.submit(v2), pool.submit(v1, JPEG)
        blocker.result(), together_v2.result(), together_v1.result()
    assert backend.sizes == [1, 3]  # the blocker alone, then v2's two images and v1's one in one batch
    alone = v2()
    np.testing.assert_allclose(together_v2.result()["probabilities"], alone["probabilities"], rtol=1e-6)
    np.testing.assert_allclose(together_v1.result()[:, 1], alone["probabilities"][0], rtol=1e-6)
    assert 'imgclf_batch_size_sum{model="tiny"} 6.0' in client.get("/metrics").text  # 1 + 3, then 2 alone


def test_metrics_count_v2_requests_and_errors(make_client: ClientFactory) -> None:
    client = make_client()
    client.post(INFER, json={"inputs": [images_input(JPEG)]})
    client.post(INFER, json={"inputs": [images_input(JPEG, shape=[1, 2])]})
    text = client.get("/metrics").text
    assert 'imgclf_requests_total{method="POST",route="/v2/models/{name}/infer",status="200"} 1.0' in text
    assert 'imgclf_requests_total{method="POST",route="/v2/models/{name}/infer",status="400"} 1.0' in text
    assert 'imgclf_errors_total{code="invalid_tensor"} 1.0' in text
    assert 'imgclf_images_total{model="tiny"} 1.0' in text


def test_v2_requests_start_no_threads(client: TestClient) -> None:
    before = set(threading.enumerate())
    for _ in range(3):
        assert client.post(INFER, **binary_images_request(JPEG)).status_code == 200
        assert client.get("/v2/models/tiny").status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
    assert set(threading.enumerate()) - before == set()


# The published OpenAPI document

OPENAPI_CASES: dict[str, tuple[str, str, str, dict[str, Any], int]] = {
    "server metadata": ("get", "/v2", "/v2", {}, 200),
    "liveness": ("get", "/v2/health/live", "/v2/health/live", {}, 200),
    "readiness": ("get", "/v2/health/ready", "/v2/health/ready", {}, 200),
    "model metadata": ("get", "/v2/models/{name}", "/v2/models/tiny", {}, 200),
    "version metadata": ("get", "/v2/models/{name}/versions/{version}", "/v2/models/tiny/versions/1", {}, 200),
    "unknown model metadata": ("get", "/v2/models/{name}", "/v2/models/nope", {}, 404),
    "model readiness": ("get", "/v2/models/{name}/ready", "/v2/models/tiny/ready", {}, 200),
    "infer, JSON": ("post", "/v2/models/{name}/infer", INFER, tensor_case(), 200),
    "infer a version, classification": (
        "post",
        "/v2/models/{name}/versions/{version}/infer",
        "/v2/models/tiny/versions/1/infer",
        tensor_case([{"name": "probabilities", "parameters": {CLASSIFY: 2}}]),
        200,
    ),
    "infer, bad tensor": ("post", "/v2/models/{name}/infer", INFER, tensor_case(datatype="INT8"), 400),
    "infer, unknown model": ("post", "/v2/models/{name}/infer", "/v2/models/nope/infer", tensor_case(), 404),
}


@pytest.mark.parametrize("case", list(OPENAPI_CASES), ids=list(OPENAPI_CASES))
def test_v2_responses_match_the_openapi_document(client: TestClient, case: str) -> None:
    method, documented_path, path, arguments, status = OPENAPI_CASES[case]
    response = client.request(method.upper(), path, **arguments)
    assert response.status_code == status, response.text
    assert_documented(client.get("/openapi.json").json(), method, documented_path, response)


def test_not_ready_matches_the_openapi_document(make_client: ClientFactory, tmp_path: Path) -> None:
    client = make_client(tmp_path / "empty")
    response = client.get("/v2/health/ready")
    assert response.status_code == 503
    assert_documented(client.get("/openapi.json").json(), "get", "/v2/health/ready", response)

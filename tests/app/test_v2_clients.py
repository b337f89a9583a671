"""Integration: real Open Inference Protocol clients, unchanged, against the real default model over a real socket.

``tritonclient[http]`` (geventhttpclient, the binary tensor data extension by default) and KServe's
``InferenceRESTClient`` (httpx, async) talk to ``uvicorn`` serving the app on a free port, as they would to Triton
or a KServe predictor; their answers are checked against ``/v1`` on the same server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
import uvicorn
from PIL import Image
from tritonclient.utils import InferenceServerException

from app.main import create_app
from modelspec import Bundle
from modelspec.decode import load_input
from tests.app.conftest import settings_for
from tests.app.images import CAT_CLASSES
from tests.app.v2_helpers import b64, parse_classes
from tests.conftest import encode

pytestmark = pytest.mark.integration

MODEL = "efficientnet-lite0"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(default_models_dir: Path) -> Iterator[str]:
    """The app under uvicorn on a free port of 127.0.0.1, for the module; its ``host:port``."""
    app = create_app(settings_for(default_models_dir, default_model=MODEL, intra_op_threads=2))
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning", access_log=False)
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not uvicorn_server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"127.0.0.1:{config.port}"
    uvicorn_server.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def jpegs(photo: Callable[[str], Image.Image]) -> dict[str, bytes]:
    return {name: encode(photo(name), quality=95) for name in ("chelsea", "coffee", "astronaut")}


def v1_top5(url: str, *images: bytes) -> list[list[dict[str, Any]]]:
    files = [("file", (f"{i}.jpg", image, "image/jpeg")) for i, image in enumerate(images)]
    response = httpx.post(f"http://{url}/v1/predict", files=files, params={"top_k": 5}, timeout=60)
    return [result["predictions"] for result in response.json()["results"]]


def v1_embedding(url: str, image: bytes) -> np.ndarray:
    response = httpx.post(f"http://{url}/v1/features", files={"file": ("x.jpg", image)}, timeout=60)
    return np.asarray(response.json()["results"][0]["embedding"], dtype=np.float32)


def classes(strings: np.ndarray) -> list[list[tuple[float, int, str]]]:
    """A client's BYTES result ([N, k]: bytes when sent as binary, str in JSON) as ``(probability, index, label)``
    rows."""
    return [parse_classes([v.decode() if isinstance(v, bytes) else v for v in row]) for row in strings]


def encoded_images(*images: bytes, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("encoded_images", [len(images)], "BYTES")
    values = list(images) if binary else [b64(image) for image in images]
    tensor.set_data_from_numpy(np.array(values, dtype=object), binary_data=binary)
    return tensor


def test_tritonclient_sees_a_ready_server_and_the_model(server: str) -> None:
    client = triton.InferenceServerClient(server)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata(MODEL)
    shapes = {tensor["name"]: tensor["shape"] for tensor in metadata["inputs"] + metadata["outputs"]}
    assert shapes == {
        "encoded_images": [-1],
        "images": [-1, 3, 224, 224],
        "probabilities": [-1, 1000],
        "embedding": [-1, 1280],
    }
    assert not client.is_model_ready(MODEL, "2")


def test_tritonclient_classifies_the_cat_photo_sent_as_binary_bytes(server: str, jpegs: dict[str, bytes]) -> None:
    client = triton.InferenceServerClient(server)
    result = client.infer(
        MODEL,
        [encoded_images(jpegs["chelsea"])],
        outputs=[triton.InferRequestedOutput("probabilities", class_count=5)],
    )
    [top5] = classes(result.as_numpy("probabilities"))
    assert top5[0][2] in CAT_CLASSES
    [v1] = v1_top5(server, jpegs["chelsea"])
    assert [(index, label) for _, index, label in top5] == [(p["index"], p["label"]) for p in v1]
    np.testing.assert_allclose([score for score, _, _ in top5], [p["score"] for p in v1], rtol=1e-5)


def test_tritonclient_preprocessed_fp32_gives_v1s_top5(
    server: str, jpegs: dict[str, bytes], default_bundle: Bundle
) -> None:
    array = load_input(jpegs["chelsea"], default_bundle.spec.preprocessing)[None]
    tensor = triton.InferInput("images", list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)
    client = triton.InferenceServerClient(server)
    result = client.infer(MODEL, [tensor], outputs=[triton.InferRequestedOutput("probabilities", class_count=5)])
    [top5] = classes(result.as_numpy("probabilities"))
    [v1] = v1_top5(server, jpegs["chelsea"])
    assert [index for _, index, _ in top5] == [p["index"] for p in v1]
    np.testing.assert_allclose([score for score, _, _ in top5], [p["score"] for p in v1], rtol=1e-5)


def test_tritonclient_batch_of_several_photos(server: str, jpegs: dict[str, bytes]) -> None:
    client = triton.InferenceServerClient(server)
    images = [jpegs["chelsea"], jpegs["coffee"], jpegs["astronaut"]]
    result = client.infer(
        MODEL,
        [encoded_images(*images)],
        outputs=[
            triton.InferRequestedOutput("probabilities", class_count=5),
            triton.InferRequestedOutput("embedding"),
        ],
    )
    rows = classes(result.as_numpy("probabilities"))
    assert rows[0][0][2] in CAT_CLASSES and rows[1][0][2] == "espresso"
    assert [[index for _, index, _ in row] for row in rows] == [
        [p["index"] for p in r] for r in v1_top5(server, *images)
    ]
    assert result.as_numpy("embedding").shape == (3, 1280)


def test_tritonclient_embedding_equals_v1_features(server: str, jpegs: dict[str, bytes]) -> None:
    client = triton.InferenceServerClient(server)
    result = client.infer(MODEL, [encoded_images(jpegs["coffee"])], outputs=[triton.InferRequestedOutput("embedding")])
    embedding = result.as_numpy("embedding")
    assert embedding.shape == (1, 1280) and embedding.dtype == np.float32
    np.testing.assert_allclose(embedding[0], v1_embedding(server, jpegs["coffee"]), rtol=1e-5, atol=1e-5)


def test_tritonclient_json_with_base64_equals_binary(server: str, jpegs: dict[str, bytes]) -> None:
    client = triton.InferenceServerClient(server)
    answers = []
    for binary in (True, False):
        outputs = [
            triton.InferRequestedOutput("probabilities", binary_data=binary, class_count=3),
            triton.InferRequestedOutput("embedding", binary_data=binary),
        ]
        result = client.infer(MODEL, [encoded_images(jpegs["chelsea"], binary=binary)], outputs=outputs)
        answers.append((classes(result.as_numpy("probabilities")), result.as_numpy("embedding")))
    (binary_top, binary_embedding), (json_top, json_embedding) = answers
    assert [i for _, i, _ in binary_top[0]] == [i for _, i, _ in json_top[0]]
    np.testing.assert_allclose(json_embedding, binary_embedding, rtol=1e-6)


def test_tritonclient_reports_a_broken_image_with_status_400(server: str, jpegs: dict[str, bytes]) -> None:
    client = triton.InferenceServerClient(server)
    with pytest.raises(InferenceServerException) as raised:
        client.infer(MODEL, [encoded_images(jpegs["chelsea"], b"GIF89a broken")])
    assert raised.value.status() == "400"
    assert "encoded_images[1]" in raised.value.message()


def test_kserve_rest_client_v2(server: str, jpegs: dict[str, bytes]) -> None:
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
    from kserve.protocol.infer_type import RequestedOutput

    base_url = f"http://{server}"

    async def run() -> tuple[bool, bool, list[Any], list[Any]]:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
        try:
            ready = await client.is_server_ready(base_url)
            model_ready = await client.is_model_ready(base_url, MODEL)
            answers = []
            for binary in (True, False):
                images = InferInput("encoded_images", [2], "BYTES")
                values = [jpegs["chelsea"], jpegs["coffee"]]
                images.set_data_from_numpy(
                    np.array(values if binary else [b64(v) for v in values], dtype=object), binary_data=binary
                )
                request = InferRequest(
                    model_name=MODEL,
                    infer_inputs=[images],
                    request_outputs=[RequestedOutput("probabilities", {"classification": 5, "binary_data": binary})],
                )
                response = await client.infer(base_url, request, model_name=MODEL)
                assert response.model_name == MODEL
                answers.append(response.outputs[0].as_numpy().tolist())
            return ready, model_ready, answers[0], answers[1]
        finally:
            await client.close()

    ready, model_ready, binary, as_json = asyncio.run(run())
    assert ready and model_ready
    for rows in (binary, as_json):
        parsed = classes(np.asarray(rows, dtype=object))
        assert parsed[0][0][2] in CAT_CLASSES and parsed[1][0][2] == "espresso"
        expected = v1_top5(server, jpegs["chelsea"], jpegs["coffee"])
        assert [[i for _, i, _ in row] for row in parsed] == [[p["index"] for p in r] for r in expected]

"""Explanations (occlusion sensitivity): the grid, the API's answers and errors, and where the evidence is found."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api.explain_overlay import crop_pixels, pixel_heat
from app.engine.explain import BACKGROUND_NICENESS, ExplainSlots, OcclusionGrid, explain_occlusion
from app.engine.inference import InferenceFailedError, ModelReloadingError
from app.engine.metrics import Metrics
from app.engine.model import load_model
from app.main import create_app
from modelspec import Bundle, Preprocessing
from modelspec.preprocess import preprocess, resize_and_crop
from tests.app.conftest import ClientFactory, settings_for
from tests.conftest import TINY_LABELS, encode


def shape_png(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return encode(Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)), "PNG")


def explain(client: TestClient, data: bytes, path: str = "/v1/models/tiny/explain", **params: object) -> dict:
    response = client.post(path, files={"file": ("shape.png", data, "image/png")}, params=params)
    assert response.status_code == 200, response.text
    answer: dict = response.json()
    return answer


# The grid


def test_default_grid_is_a_32_px_window_every_16_px_on_224() -> None:
    grid = OcclusionGrid.for_crop(224)
    assert (grid.patch, grid.stride, grid.rows, grid.cols, grid.positions) == (32, 16, 13, 13, 169)
    assert grid.offsets[0] == 0 and grid.offsets[-1] == 224 - 32


@pytest.mark.parametrize(("crop", "patch", "stride"), [(32, None, None), (32, 7, 5), (299, None, None), (224, 50, 30)])
def test_every_pixel_is_covered_and_windows_stay_inside(crop: int, patch: int | None, stride: int | None) -> None:
    grid = OcclusionGrid.for_crop(crop, patch, stride)
    covered = np.zeros((crop, crop), dtype=int)
    for top, left in grid.windows():
        assert 0 <= top <= crop - grid.patch and 0 <= left <= crop - grid.patch
        covered[top : top + grid.patch, left : left + grid.patch] += 1
    assert covered.min() >= 1
    assert grid.positions == len(list(grid.windows()))


def test_the_default_window_scales_with_the_crop() -> None:
    assert OcclusionGrid.for_crop(32).patch == 5  # 32 * 32 / 224, rounded
    assert OcclusionGrid.for_crop(448).patch == 64
    assert OcclusionGrid.for_crop(448).stride == 32


def test_the_overlay_starts_from_exactly_the_pixels_the_model_saw() -> None:
    rng = np.random.default_rng(1)
    prep = Preprocessing.for_crop(32)
    picture = Image.fromarray(rng.integers(0, 256, (50, 60, 3), dtype=np.uint8))
    assert np.array_equal(crop_pixels(preprocess(picture, prep), prep), np.asarray(resize_and_crop(picture, prep)))


# The API, on the tiny model


def test_explain_answers_the_grid_of_drops_for_the_top_class(client: TestClient) -> None:
    answer = explain(client, shape_png())
    grid = answer["grid"]
    # A 5 px window every 2 px from 0 to 26, then one at 27 that reaches the far edge (32 px).
    offsets = [*range(0, 27, 2), 27]
    assert grid == {
        "rows": 15,
        "cols": 15,
        "patch": 5,
        "stride": 2,
        "crop_size": 32,
        "offsets": offsets,
        "fill": "mean",
    }
    assert len(answer["drops"]) == 15 and all(len(row) == 15 for row in answer["drops"])
    assert answer["forward_passes"] == 1 + 15 * 15
    assert answer["method"] == "occlusion" and answer["model"] == {"name": "tiny", "version": 1}
    predictions = client.post("/v1/models/tiny/predict", files={"file": ("s.png", shape_png())}).json()
    top = predictions["results"][0]["predictions"][0]
    assert answer["target"]["index"] == top["index"] and answer["target"]["score"] == pytest.approx(top["score"])
    assert answer["predictions"][0]["index"] == top["index"]
    assert "overlay" not in answer  # only on request


def test_class_by_label_or_index_and_custom_geometry(client: TestClient) -> None:
    by_label = explain(client, shape_png(), **{"class": "triangle", "patch": 8, "stride": 8})
    by_index = explain(client, shape_png(), **{"class": "2", "patch": 8, "stride": 8})
    assert by_label["target"]["label"] == "triangle" == by_index["target"]["label"]
    assert by_label["drops"] == by_index["drops"]
    assert (by_label["grid"]["rows"], by_label["grid"]["offsets"]) == (4, [0, 8, 16, 24])


def test_drops_are_the_score_minus_the_score_with_the_window_greyed_out(client: TestClient) -> None:
    """Check one cell by hand: grey out the first window of the preprocessed image and predict that."""
    answer = explain(client, shape_png(), **{"class": "square", "patch": 16, "stride": 16})
    model = client.app.state.services.registry.get("tiny")  # type: ignore[attr-defined]
    image = preprocess(Image.open(io.BytesIO(shape_png())), model.spec.preprocessing)
    image[:, 16:32, 0:16] = 0.0  # the window at row 1, column 0
    logits, _ = model.backend.run(image[None])
    probabilities = np.exp(logits[0] - logits[0].max()) / np.exp(logits[0] - logits[0].max()).sum()
    expected = answer["target"]["score"] - probabilities[TINY_LABELS.index("square")]
    assert answer["drops"][1][0] == pytest.approx(expected, abs=1e-5)


def test_overlay_on_request_as_json_or_as_the_png_alone(client: TestClient) -> None:
    answer = explain(client, shape_png(), overlay=True)
    prefix = "data:image/png;base64,"
    assert answer["overlay"].startswith(prefix)
    with Image.open(io.BytesIO(base64.b64decode(answer["overlay"][len(prefix) :]))) as picture:
        assert picture.format == "PNG" and picture.size == (224, 224)  # 32 px crop enlarged 7x
    response = client.post(
        "/v1/models/tiny/explain", content=shape_png(), headers={"Content-Type": "image/png", "Accept": "image/png"}
    )
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG")


def test_default_model_route(make_client: ClientFactory) -> None:
    client = make_client(default_model="tiny")
    assert explain(client, shape_png(), path="/v1/explain")["model"]["name"] == "tiny"


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"class": "hexagon"}, "not one of this model's labels"),
        ({"class": "7"}, "out of range"),
        ({"patch": 33}, "patch: must be between 1"),
        ({"stride": 0}, "stride"),
        ({"fill": "purple"}, "fill"),
        ({"patch": 1, "stride": 1, "top_k": 1000}, "top_k"),
    ],
)
def test_bad_parameters_are_422_with_the_fix(client: TestClient, params: dict, fragment: str) -> None:
    response = client.post("/v1/models/tiny/explain", files={"file": ("s.png", shape_png())}, params=params)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_parameter"
    assert fragment in response.json()["error"]["message"]


def test_too_many_positions_names_the_setting(make_client: ClientFactory) -> None:
    client = make_client(explain_max_positions=100)
    response = client.post("/v1/models/tiny/explain", files={"file": ("s.png", shape_png())}, params={"stride": 1})
    assert response.status_code == 422
    assert "IMGCLF_EXPLAIN_MAX_POSITIONS" in response.json()["error"]["message"]


def test_same_errors_as_predict(client: TestClient) -> None:
    text = client.post("/v1/models/tiny/explain", files={"file": ("notes.txt", b"hello", "text/plain")})
    assert text.status_code == 415 and text.json()["error"]["code"] == "unsupported_image_format"
    two = client.post(
        "/v1/models/tiny/explain", files=[("file", ("a.png", shape_png())), ("file", ("b.png", shape_png()))]
    )
    assert two.status_code == 400 and "one image" in two.json()["error"]["message"]
    missing = client.post("/v1/models/nope/explain", files={"file": ("s.png", shape_png())})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    empty = client.post("/v1/models/tiny/explain")
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "empty_body"


def test_the_body_limit_applies(make_client: ClientFactory) -> None:
    client = make_client(max_body_bytes=1000)
    response = client.post("/v1/models/tiny/explain", content=b"\xff" * 5000, headers={"Content-Type": "image/png"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


def test_a_busy_service_answers_429_with_retry_after(client: TestClient) -> None:
    slots = client.app.state.explain_slots  # type: ignore[attr-defined]
    with slots.take():  # as if another client's explanation were running
        response = client.post("/v1/models/tiny/explain", files={"file": ("s.png", shape_png())})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "explain_busy" and response.headers["retry-after"] == "1"
    assert "IMGCLF_EXPLAIN_CONCURRENCY" in response.json()["error"]["message"]
    assert explain(client, shape_png())["grid"]["rows"] == 15  # the slot is free again


def test_a_prediction_does_not_wait_for_a_running_explanation(make_client: ClientFactory) -> None:
    """The occluded copies go to the model a batch at a time, so a prediction sent meanwhile is answered while the
    explanation is still running (1,024 positions), not after it."""
    client = make_client(max_batch_size=4)
    slots = client.app.state.explain_slots  # type: ignore[attr-defined]
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(explain, client, shape_png(), **{"patch": 1, "stride": 1})
        while slots.running == 0 and not running.done():
            pass
        predicted = client.post("/v1/models/tiny/predict", files={"file": ("s.png", shape_png(1))})
        still_explaining = not running.done()
        assert running.result()["forward_passes"] == 1025
    assert predicted.status_code == 200
    assert still_explaining


# Where the evidence is: a trained model on a digit whose place is known, and the real model on a photo


@pytest.fixture(scope="module")
def digits_client(digits_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    models_dir = tmp_path_factory.mktemp("digits-explain")
    shutil.copytree(digits_bundle.path, models_dir / digits_bundle.name / str(digits_bundle.version))
    with TestClient(create_app(settings_for(models_dir))) as client:
        yield client


def digit_on_canvas(path: Path) -> Image.Image:
    """A held-out digit (32 px, white on black) on a blank 40 px canvas, 6 px from the left and 2 from the top."""
    canvas = Image.new("L", (40, 40), 0)
    canvas.paste(Image.open(path).convert("L"), (6, 2))
    return canvas


def test_the_heatmap_peaks_on_the_digit(digits_client: TestClient, digits_bundle: Bundle, digits_data: Path) -> None:
    """For each class, the first held-out digit the model still recognises on the canvas: occluded with the
    background (black), the window whose removal lowers the class most lies on the digit's strokes."""
    prep = digits_bundle.spec.preprocessing
    explained = 0
    for label in digits_bundle.spec.labels:
        for path in sorted((digits_data / "test" / label).glob("*.png"))[:10]:
            image = encode(digit_on_canvas(path), "PNG")
            top1 = digits_client.post("/v1/predict", files={"file": ("d.png", image)}).json()["results"][0]
            if top1["predictions"][0]["label"] == label:
                break
        else:
            continue
        answer = explain(digits_client, image, path="/v1/models/digits/explain", **{"class": label, "fill": "black"})
        grid, drops = answer["grid"], np.asarray(answer["drops"])
        row, col = np.unravel_index(np.argmax(drops), drops.shape)
        top, left, side = grid["offsets"][row], grid["offsets"][col], grid["patch"]
        # Where the ink is in what the model saw, worked out from the canvas alone.
        ink = np.asarray(resize_and_crop(digit_on_canvas(path).convert("RGB"), prep))[..., 0] > 128
        assert ink[top : top + side, left : left + side].any(), (label, row, col, drops.round(3))
        assert drops.max() > 0.05, (label, drops.max())
        explained += 1
    assert explained >= 8, f"the model recognised only {explained} digits on the canvas"


def head_and_corners(heat: np.ndarray, head: tuple[int, int, int, int], side: int = 48) -> tuple[float, float]:
    x0, y0, x1, y1 = head
    corners = [heat[:side, :side], heat[:side, -side:], heat[-side:, :side], heat[-side:, -side:]]
    return float(heat[y0:y1, x0:x1].mean()), float(np.mean([corner.mean() for corner in corners]))


@pytest.mark.integration
def test_on_chelsea_the_heat_is_on_the_cats_head(
    default_models_dir: Path, photo: Callable[[str], Image.Image], tmp_path: Path
) -> None:
    """chelsea on a plain wall (the photo at (60, 60) of a 600 px canvas): the mean drop over the cat's head is
    larger than over the corners. (In chelsea's own centre crop every corner is cat fur too, so the comparison
    says nothing there.)"""
    canvas = Image.new("RGB", (600, 600), (240, 240, 236))
    canvas.paste(photo("chelsea"), (60, 60))
    # The head (eyes to chin) is about x 130-360, y 60-290 of the photo; the model sees the canvas at 256/600 of
    # its size with 16 px cut from each side.
    head = tuple(round((60 + v) * 256 / 600) - 16 for v in (130, 60, 360, 290))
    with TestClient(create_app(settings_for(default_models_dir, intra_op_threads=2, max_batch_size=16))) as client:
        answer = explain(client, encode(canvas, quality=95), path="/v1/explain", overlay=True)
    assert answer["target"]["label"] in {"tabby", "tiger cat", "Egyptian cat"}
    grid = OcclusionGrid(answer["grid"]["crop_size"], answer["grid"]["patch"], answer["grid"]["stride"])
    inside, corners = head_and_corners(pixel_heat(np.asarray(answer["drops"]), grid), head)  # type: ignore[arg-type]
    assert inside > corners + 0.005, (inside, corners)
    (tmp_path / "chelsea-heatmap.png").write_bytes(base64.b64decode(answer["overlay"].split(",", 1)[1]))


def test_a_model_unloaded_meanwhile_asks_for_a_retry(models_dir: Path) -> None:
    """A hot reload closes the old version's backend; an explanation still running on it answers 503 (send it
    again), not a 500. A model that fails while still loaded is a 500 that says it was logged."""
    model = load_model(models_dir / "tiny" / "1", settings_for(models_dir), Metrics())
    prep = model.spec.preprocessing
    image = preprocess(Image.open(io.BytesIO(shape_png())), prep)
    grid = OcclusionGrid.for_crop(prep.crop_size)
    model.close()
    with pytest.raises(ModelReloadingError):
        asyncio.run(explain_occlusion(model, image, grid, None, still_loaded=lambda: False))
    with pytest.raises(InferenceFailedError, match="logged"):
        asyncio.run(explain_occlusion(model, image, grid, None, still_loaded=lambda: True))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are a Linux feature")
def test_explanations_run_at_a_lower_cpu_priority_than_predictions() -> None:
    slots = ExplainSlots(1)

    def own_niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    service = own_niceness()
    assert slots.executor.submit(own_niceness).result() == min(19, service + BACKGROUND_NICENESS)
    assert own_niceness() == service  # the service's own threads keep theirs
    slots.executor.shutdown()


def test_the_torch_backend_explains_alike(make_client: ClientFactory) -> None:
    """The occluded copies run on whichever backend serves the model: PyTorch (here on the CPU) gives the drops
    ONNX Runtime gives."""
    onnx = explain(make_client(), shape_png(), **{"patch": 8, "stride": 8})
    torch = explain(make_client(backend="torch"), shape_png(), **{"patch": 8, "stride": 8})
    assert torch["target"]["index"] == onnx["target"]["index"]
    assert np.allclose(torch["drops"], onnx["drops"], atol=1e-4)

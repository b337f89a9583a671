"""IMGCLF_PRECISION: which graph a model serves (fp32 or its int8 one) and why, as the user sees it.

The load-time speed measurement is injected (``create_backend(..., measure=...)``) so that each test forces its
outcome: int8 faster or slower on "this machine", whatever this machine's CPU really does.
"""

from __future__ import annotations

import functools
import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import app.engine.model
from app.batch.__main__ import main as batch_main
from app.config import Settings
from app.engine.backends import create_backend
from app.engine.precision import MARGIN, SpeedProbe, choose_precision, measure_speedups
from app.main import create_app
from modelspec import Bundle, read_bundle, tensors
from modelspec.bundle import INT8_ONNX_FILE, ONNX_FILE
from modelspec.decode import load_input
from modelspec.runtime import build_session
from modelspec.trust import scorer_for as trust_scorer_for
from tests.app.conftest import settings_for
from tests.app.int8_bundle import mark_beyond_bound

SIZES = (1, 4, 8)


class ForcedSpeed:
    """A measurement that answers ``ratio`` at every batch size and records the probes it was given."""

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio
        self.probes: list[SpeedProbe] = []

    def __call__(self, probe: SpeedProbe) -> dict[int, float]:
        self.probes.append(probe)
        return dict.fromkeys(probe.batch_sizes, self.ratio)


@pytest.fixture
def int8_dir(int8_bundle: Bundle, tmp_path: Path) -> Path:
    """A writable copy of the models folder holding the int8 digits bundle."""
    target = tmp_path / "models"
    shutil.copytree(int8_bundle.path.parent.parent, target)
    return target


def digits(models_dir: Path) -> Bundle:
    return read_bundle(models_dir / "digits" / "1")


def choose(bundle: Bundle, measure: ForcedSpeed, **settings: str) -> tuple[str, str]:
    choice = choose_precision(Settings(**settings), bundle, 1, SIZES, measure)  # type: ignore[arg-type]
    return choice.precision, choice.reason


def test_auto_serves_int8_when_it_is_within_its_bound_and_measured_faster(int8_dir: Path) -> None:
    bundle = digits(int8_dir)
    faster = ForcedSpeed(1.9)
    precision, reason = choose(bundle, faster)

    assert precision == "int8"
    test_check = bundle.spec.quantization.checks[-1]  # type: ignore[union-attr]
    assert f"{test_check.top1_drop_points:.2f} top-1 points lost on test" in reason
    assert "1.90x fp32's speed at batch 1" in reason
    probe = faster.probes[0]  # both graphs of this bundle, at the sizes the batcher forms, with serving threads
    assert (probe.fp32.name, probe.int8.name, probe.batch_sizes, probe.threads) == (
        ONNX_FILE, INT8_ONNX_FILE, SIZES, 1
    )  # fmt: skip


@pytest.mark.parametrize("ratio", [0.8, 1.0, MARGIN - 0.02])
def test_auto_keeps_fp32_when_int8_is_not_clearly_faster_here(int8_dir: Path, ratio: float) -> None:
    precision, reason = choose(digits(int8_dir), ForcedSpeed(ratio))
    assert precision == "fp32"
    assert f"{ratio:.2f}x fp32's speed" in reason and "within its bound" in reason


def test_auto_keeps_fp32_when_int8_is_slower_at_one_batch_size(int8_dir: Path) -> None:
    def mixed(probe: SpeedProbe) -> dict[int, float]:
        return {size: 2.0 if size == 1 else 0.9 for size in probe.batch_sizes}

    choice = choose_precision(Settings(), digits(int8_dir), 1, SIZES, mixed)
    assert choice.precision == "fp32" and "2.00x fp32's speed at batch 1, 0.90x at batch 4" in choice.reason


def test_auto_keeps_fp32_for_a_bundle_beyond_its_bound_without_measuring(int8_dir: Path) -> None:
    bundle = mark_beyond_bound(digits(int8_dir))
    assert INT8_ONNX_FILE in bundle.spec.files  # the file is there, the record says no
    measure = ForcedSpeed(3.0)
    precision, reason = choose(bundle, measure)
    assert precision == "fp32" and "beyond its bound" in reason and not measure.probes


def test_auto_keeps_fp32_for_a_bundle_without_int8(tiny_models_dir: Path) -> None:
    measure = ForcedSpeed(3.0)
    precision, reason = choose(read_bundle(tiny_models_dir / "tiny" / "1"), measure)
    assert precision == "fp32" and "no int8 graph" in reason and "training quantize" in reason
    assert not measure.probes


def test_the_setting_overrides_the_measurement(int8_dir: Path) -> None:
    measure = ForcedSpeed(3.0)
    assert choose(digits(int8_dir), measure, precision="fp32") == ("fp32", "fp32: IMGCLF_PRECISION=fp32")
    precision, reason = choose(digits(int8_dir), ForcedSpeed(0.5), precision="int8")
    assert precision == "int8" and "IMGCLF_PRECISION=int8" in reason and "within its bound" in reason


def test_int8_asked_for_a_bundle_without_it_serves_fp32_and_says_why(
    tiny_models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="app.engine.precision"):
        precision, reason = choose(read_bundle(tiny_models_dir / "tiny" / "1"), ForcedSpeed(3.0), precision="int8")
    assert precision == "fp32" and reason.startswith("fp32: IMGCLF_PRECISION=int8, but the bundle has no int8")
    assert "serving fp32" in caplog.text


def test_the_real_measurement_times_both_graphs_at_each_size(int8_bundle: Bundle) -> None:
    probe = SpeedProbe(
        fp32=int8_bundle.file(ONNX_FILE),
        int8=int8_bundle.file(INT8_ONNX_FILE),
        threads=1,
        spinning="within-run",
        image_shape=(3, 32, 32),
        batch_sizes=SIZES,
        seconds=0.2,
    )
    speedups = measure_speedups(probe)
    assert sorted(speedups) == list(SIZES) and all(0 < ratio < 100 for ratio in speedups.values())


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch, int8_dir: Path) -> Iterator[Callable[..., TestClient]]:
    """Start the app on the int8 digits folder with the load-time measurement forced to ``ratio``."""
    clients: list[TestClient] = []

    def start(ratio: float, **overrides: object) -> TestClient:
        factory = functools.partial(create_backend, measure=ForcedSpeed(ratio))
        monkeypatch.setattr(app.engine.model, "create_backend", factory)
        client = TestClient(create_app(settings_for(int8_dir, **overrides)))
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def test_the_precision_served_is_reported_everywhere(serve: Callable[..., TestClient]) -> None:
    client = serve(2.0)
    detail = client.get("/v1/models/digits").json()
    assert detail["precision"] == "int8" and "2.00x fp32's speed at batch 1" in detail["precision_reason"]
    listed = client.get("/v1/models").json()["models"][0]
    assert (listed["precision"], listed["precision_reason"]) == (detail["precision"], detail["precision_reason"])
    v2 = client.get("/v2/models/digits").json()
    assert v2["parameters"] == {"precision": "int8", "precision_reason": detail["precision_reason"]}
    metrics = client.get("/metrics").text
    assert 'imgclf_model_precision_info{model="digits",precision="int8",version="1"} 1.0' in metrics


def test_slower_int8_is_reported_as_fp32(serve: Callable[..., TestClient]) -> None:
    client = serve(0.7)
    detail = client.get("/v1/models/digits").json()
    assert detail["precision"] == "fp32" and "0.70x" in detail["precision_reason"]
    assert 'imgclf_model_precision_info{model="digits",precision="fp32",version="1"} 1.0' in client.get("/metrics").text


def labelled_test_images(data: Path) -> list[tuple[Path, int]]:
    return [(path, int(path.parent.name)) for path in sorted((data / "test").glob("*/*.png"))]


def predict_top(client: TestClient, paths: list[Path], top_k: int) -> list[list[int]]:
    """The indices of each image's top ``top_k`` answers, posted 32 images a request."""
    answers: list[list[int]] = []
    for start in range(0, len(paths), 32):
        files = [("file", (path.name, path.read_bytes(), "image/png")) for path in paths[start : start + 32]]
        response = client.post(f"/v1/models/digits/predict?top_k={top_k}", files=files)
        assert response.status_code == 200, response.text
        answers += [[entry["index"] for entry in result["predictions"]] for result in response.json()["results"]]
    return answers


def direct_logits(bundle: Bundle, graph: str, paths: list[Path]) -> np.ndarray:
    batch = np.stack([load_input(path.read_bytes(), bundle.spec.preprocessing) for path in paths])
    session = build_session(bundle.file(graph), threads=1)
    return np.asarray(session.run([tensors.LOGITS], {tensors.INPUT: batch})[0])


@pytest.mark.parametrize(("ratio", "graph"), [(2.0, INT8_ONNX_FILE), (0.5, ONNX_FILE)])
def test_answers_are_the_served_graphs_and_match_the_exports_evaluation(
    serve: Callable[..., TestClient], digits_data: Path, int8_dir: Path, ratio: float, graph: str
) -> None:
    client = serve(ratio)
    bundle = digits(int8_dir)
    samples = labelled_test_images(digits_data)
    paths = [path for path, _ in samples]
    answers = predict_top(client, paths, top_k=3)

    # The API's ranking is the served graph's own, image by image (int8 logits tie often: compare their values).
    logits = direct_logits(bundle, graph, paths)
    ranked = np.take_along_axis(logits, np.array(answers), axis=1)
    np.testing.assert_allclose(ranked, -np.sort(-logits, axis=1)[:, :3], rtol=0, atol=1e-5)
    # And its top-1 on the test split is what quantisation recorded for that graph at export.
    check = bundle.spec.quantization.checks[-1]  # type: ignore[union-attr]
    assert check.split == "test" and check.images == len(samples)
    top1 = float(np.mean([answer[0] == label for answer, (_, label) in zip(answers, samples, strict=True)]))
    assert top1 == pytest.approx(check.top1_int8 if graph == INT8_ONNX_FILE else check.top1_fp32, abs=1e-9)


def test_the_batch_command_follows_the_same_rule_and_says_so(
    int8_dir: Path,
    digits_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("IMGCLF_INTRA_OP_THREADS", "1")
    images = digits_data / "test" / "3"
    for precision in ("int8", "fp32"):
        monkeypatch.setenv("IMGCLF_PRECISION", precision)
        output = tmp_path / f"{precision}.csv"
        argv = [str(images), "-o", str(output), "--models-dir", str(int8_dir), "--model", "digits", "--quiet"]
        assert batch_main(argv) == 0
        summary = capsys.readouterr().out.splitlines()[0]
        assert f"onnx on cpu, {precision}: IMGCLF_PRECISION={precision}" in summary


def test_int8_answers_are_scored_with_the_trust_data_fitted_on_int8(
    serve: Callable[..., TestClient], digits_data: Path, int8_dir: Path
) -> None:
    """Calibrated scores, OOD scores and sets of an int8 model are int8's own, not fp32's statistics reused."""
    client = serve(2.0)
    bundle = digits(int8_dir)
    record = bundle.spec.quantization
    assert record is not None and record.trust is not None and bundle.spec.trust is not None
    paths = [path for path, _ in labelled_test_images(digits_data)][:24]
    files = [("file", (path.name, path.read_bytes(), "image/png")) for path in paths]
    response = client.post("/v1/models/digits/predict?top_k=10&coverage=0.9", files=files)
    assert response.status_code == 200, response.text

    batch = np.stack([load_input(path.read_bytes(), bundle.spec.preprocessing) for path in paths])
    session = build_session(bundle.file(INT8_ONNX_FILE), threads=1)
    logits, embeddings = session.run([tensors.LOGITS, tensors.EMBEDDING], {tensors.INPUT: batch})
    expected = trust_scorer_for(bundle, "int8")(logits, embeddings, coverage=0.9)
    assert expected.ood_score is not None and expected.sets is not None
    for row, result in enumerate(response.json()["results"]):
        scores = {entry["index"]: entry["score"] for entry in result["predictions"]}
        np.testing.assert_allclose([scores[i] for i in range(10)], expected.probs[row], rtol=0, atol=1e-5)
        assert result["ood_score"] == pytest.approx(float(expected.ood_score[row]), rel=1e-5, abs=1e-6)
        assert sorted(result["prediction_set"]["indices"]) == expected.sets.indices(row)

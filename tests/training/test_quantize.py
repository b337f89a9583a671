"""int8 bundles: ``python -m training quantize`` and ``quantize_bundle`` on a small trained model (LeNet-5 on digits).

What a user checks: the int8 file is there and verified like the others, model.json says what was measured and
whether int8 is within its bound, the numbers it records are what the int8 graph really gives, a quantisation that
loses accuracy is refused and says so, and a bundle without data gets an error that names the fix.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from modelspec import BundleError, read_bundle, tensors
from modelspec.bundle import INT8_ONNX_FILE, ONNX_FILE, Bundle, read_spec
from training.cli import main
from training.data.folders import scan_image_folder
from training.quantize import compare, graph, images
from training.quantize.command import recorded_splits
from training.quantize.core import quantize_bundle, quantize_unlabelled
from training.quantize.settings import Setting


@pytest.fixture
def tiny_copy(tiny_models_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny random LeNet-5 bundle (no training data recorded)."""
    target = tmp_path / "models" / "tiny" / "1"
    shutil.copytree(tiny_models_dir / "tiny" / "1", target)
    return target


@pytest.fixture
def digits_copy(digits_bundle: Bundle, tmp_path: Path) -> Path:
    """A private copy of the trained digits bundle (its model.json still records the digits' training folder)."""
    target = tmp_path / "models" / digits_bundle.name / str(digits_bundle.version)
    shutil.copytree(digits_bundle.path, target)
    return target


def int8_top1(bundle_dir: Path, samples: list[tuple[Path, int]]) -> tuple[float, float]:
    """fp32 and int8 top-1 computed here, independently of the record, on service-preprocessed inputs."""
    bundle = read_bundle(bundle_dir)
    batch = np.stack([images.load(path, bundle.spec.preprocessing) for path, _ in samples])
    labels = np.array([label for _, label in samples])
    scores = []
    for name in (ONNX_FILE, INT8_ONNX_FILE):
        logits = compare.session(bundle.file(name)).run([tensors.LOGITS], {tensors.INPUT: batch})[0]
        scores.append(float(np.mean(np.argmax(logits, axis=1) == labels)))
    return scores[0], scores[1]


def test_quantize_cli_adds_a_verified_int8_graph_and_its_record(
    digits_copy: Path, digits_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["quantize", str(digits_copy), "--test-data", str(digits_data / "test")])
    out = capsys.readouterr().out

    assert code == 0, out
    bundle = read_bundle(digits_copy)  # every hash verified, the int8 file's included
    record = bundle.spec.quantization
    assert record is not None and record.within_bound and record.file == INT8_ONNX_FILE
    assert INT8_ONNX_FILE in bundle.spec.files and "within the bound of 1 point" in record.reason
    assert [check.split for check in record.checks] == ["validation", "test"]
    assert record.bound.max_top1_drop_points == 1.0
    assert record.calibration.images == 256 and "split of" in record.calibration.source
    assert record.measured_on["onnxruntime"]
    assert "within the bound" in out and str(digits_copy / INT8_ONNX_FILE) in out

    # The recorded numbers are what the int8 graph gives on the test images, preprocessed as the service does.
    test = list(scan_image_folder(digits_data / "test", bundle.spec.labels).samples)
    fp32, int8 = int8_top1(digits_copy, test)
    test_check = record.checks[1]
    assert test_check.images == len(test) == 450
    assert test_check.top1_fp32 == pytest.approx(fp32) and test_check.top1_int8 == pytest.approx(int8)
    assert test_check.top1_drop_points == pytest.approx(100 * (fp32 - int8), abs=1e-3)
    assert fp32 > 0.8 and fp32 - int8 <= 0.01

    # Both outputs survive quantisation as float32, and the graph really is quantised.
    model = onnx.load(str(digits_copy / INT8_ONNX_FILE))
    assert [o.name for o in model.graph.output] == list(tensors.OUTPUTS)
    assert any(node.op_type == "QuantizeLinear" for node in model.graph.node)
    session = compare.session(digits_copy / INT8_ONNX_FILE)
    logits, embedding = session.run(None, {tensors.INPUT: np.zeros((2, 3, 32, 32), np.float32)})
    assert logits.shape == (2, 10) and embedding.shape == (2, bundle.spec.embedding_size)


def test_recorded_splits_give_back_the_training_split(digits_copy: Path, digits_data: Path) -> None:
    splits = recorded_splits(digits_copy, None, None, None)
    spec = read_spec(digits_copy)

    assert len(splits.val) == round(1347 * spec.hyperparameters["val_fraction"])
    assert not {path for path, _ in splits.train} & {path for path, _ in splits.val}
    assert splits.test is None  # the digits fit had no --test-data
    assert all(spec.labels[label] == path.parent.name for path, label in splits.val)


def test_a_quantisation_beyond_its_bound_is_recorded_and_serves_fp32(digits_copy: Path, tmp_path: Path) -> None:
    spec = read_spec(digits_copy)
    splits = recorded_splits(digits_copy, None, None, None)
    quantize_bundle(digits_copy, splits.train, splits.val)  # a good int8 first: it must be withdrawn below
    assert (digits_copy / INT8_ONNX_FILE).is_file()

    # Calibrated on black images only, every activation range is wrong: int8 loses most of its accuracy.
    black = tmp_path / "black"
    black.mkdir()
    for index in range(8):
        Image.new("RGB", (32, 32)).save(black / f"{index}.png")
    calibration = [(path, 0) for path in sorted(black.iterdir())]
    result = quantize_bundle(digits_copy, calibration, splits.val, settings=[Setting(method="minmax")])

    record = result.record
    assert not record.within_bound and record.file is None
    assert "beyond the bound" in record.reason
    check = record.checks[0]
    assert check.top1_drop_points is not None and check.top1_drop_points > 1.0
    bundle = read_bundle(digits_copy)
    assert INT8_ONNX_FILE not in bundle.spec.files and not (digits_copy / INT8_ONNX_FILE).exists()
    assert bundle.spec.quantization == record and bundle.spec.labels == spec.labels


def test_the_int8_file_is_verified_on_load(digits_copy: Path) -> None:
    splits = recorded_splits(digits_copy, None, None, None)
    quantize_bundle(digits_copy, splits.train[:64], splits.val[:64], max_top1_drop=100.0)
    with (digits_copy / INT8_ONNX_FILE).open("ab") as handle:
        handle.write(b"\0")

    with pytest.raises(BundleError, match=r"model\.int8\.onnx does not match its sha256"):
        read_bundle(digits_copy)


def test_quantize_a_bundle_without_data_names_the_fix(tiny_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quantize", str(tiny_copy)]) == 2
    error = capsys.readouterr().err
    assert "records no training data" in error and "--data DIR" in error and "--unlabelled" in error
    assert read_spec(tiny_copy).quantization is None


def test_quantize_with_data_that_is_gone(digits_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quantize", str(digits_copy), "--data", str(digits_copy / "nowhere")]) == 2
    assert "is not there: pass --data DIR" in capsys.readouterr().err


def test_unlabelled_models_are_checked_by_agreement_on_offline_photos(tiny_copy: Path) -> None:
    result = quantize_unlabelled(tiny_copy, check_images=40, calibration_images=16, min_agreement=0.0)

    record = result.record
    check = record.checks[0]
    assert check.split == "natural-images" and check.images == 40 and check.top1_fp32 is None
    assert record.bound.min_top1_agreement == 0.0 and record.within_bound and record.file == INT8_ONNX_FILE
    assert "photos" in record.calibration.source
    stored = json.loads((tiny_copy / "model.json").read_text())
    assert stored["quantization"]["checks"][0]["top1_agreement"] == check.top1_agreement


def test_sensitive_nodes_are_the_stem_and_the_classifier(tiny_copy: Path) -> None:
    model = onnx.load(str(tiny_copy / ONNX_FILE))
    by_name = {node.name: node for node in model.graph.node}

    names = graph.sensitive_nodes(model, "stem+classifier")

    assert [by_name[name].op_type for name in names] == ["Conv", "Gemm"]
    assert tensors.INPUT in by_name[names[0]].input and tensors.LOGITS in by_name[names[1]].output
    assert graph.sensitive_nodes(model, "none") == []

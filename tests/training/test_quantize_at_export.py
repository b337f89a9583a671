"""int8 at export: ``fit`` quantises the bundle it writes (``--no-int8`` skips it), and a bundle with trust data gets
trust data refitted on int8's own validation outputs, which ``trust_for(bundle, "int8")`` hands to the service.

What a user checks: model.json's quantization record and the report's one line; the int8 file verified with the
others; served probabilities, prediction sets and OOD flags for int8 computed from what int8 outputs.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from modelspec import read_bundle
from modelspec.bundle import INT8_ONNX_FILE, ONNX_FILE, WEIGHTS_FILE, Bundle, write_bundle
from modelspec.trust import INT8_TRUST_FILE, TRUST_FILE, build_trust, save_tensors, scorer_for, trust_for
from modelspec.trust.calibration import fit_temperature
from modelspec.trust.conformal import true_label_scores
from tests.training.digits import fit_digits_bundle
from training.cli import main
from training.quantize import compare, images
from training.quantize.command import recorded_splits


def test_fit_quantises_its_bundle_and_reports_it(digits_bundle: Bundle) -> None:
    record = digits_bundle.spec.quantization
    assert record is not None, "fit (int8 on by default) should record the quantisation in model.json"
    assert record.bound.max_top1_drop_points == 1.0
    assert [check.split for check in record.checks] == ["validation"]
    assert record.checks[0].images > 0 and record.calibration.source.endswith("the training split")
    assert (record.file == INT8_ONNX_FILE) == record.within_bound
    read_bundle(digits_bundle.path)  # every hash verified, the int8 file's included
    run_dir = Path(digits_bundle.spec.hyperparameters["run_dir"])
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "- int8: " in report and record.reason in report


def test_no_int8_skips_it_and_the_bound_flag_is_recorded(digits_data: Path, tmp_path: Path) -> None:
    plain = read_bundle(fit_digits_bundle(digits_data, tmp_path / "m", tmp_path / "run1", "--no-int8"))
    assert plain.spec.quantization is None and INT8_ONNX_FILE not in plain.spec.files
    assert "not quantised (--no-int8)" in (tmp_path / "run1" / "report.md").read_text(encoding="utf-8")

    strict = read_bundle(fit_digits_bundle(digits_data, tmp_path / "m", tmp_path / "run2", "--max-top1-drop", "0.25"))
    record = strict.spec.quantization
    assert record is not None and record.bound.max_top1_drop_points == 0.25
    assert "bound of 0.25 point" in record.reason


@pytest.fixture
def trusted_digits(digits_bundle: Bundle, digits_data: Path, tmp_path: Path) -> Bundle:
    """The digits bundle re-exported with trust data fitted on its fp32 validation outputs (as export does)."""
    spec = digits_bundle.spec.model_copy(update={"quantization": None})
    splits = recorded_splits(digits_bundle.path, digits_data / "train", None, None)
    val_logits, val_embeddings, val_labels = _outputs(digits_bundle.file(ONNX_FILE), splits.val)
    _, train_embeddings, train_labels = _outputs(digits_bundle.file(ONNX_FILE), splits.train[:300])
    trust, arrays = build_trust(val_logits, val_labels, val_embeddings, train_embeddings, train_labels, dims=16)
    spec = spec.model_copy(update={"trust": trust, "hyperparameters": {**spec.hyperparameters, "data": None}})
    writers = {
        name: (lambda path, name=name: shutil.copyfile(digits_bundle.file(name), path))
        for name in (WEIGHTS_FILE, ONNX_FILE)
    }
    writers[TRUST_FILE] = lambda path: save_tensors(path, arrays)
    return write_bundle(tmp_path / "models", spec, writers)


def _outputs(onnx_path: Path, samples: list[tuple[Path, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    prep = read_bundle(onnx_path.parent).spec.preprocessing
    batch = np.stack([images.load(path, prep) for path, _ in samples])
    logits, embeddings = compare.outputs(compare.session(onnx_path), [batch])
    return logits, embeddings, np.array([label for _, label in samples])


def test_quantize_refits_trust_on_int8_outputs(trusted_digits: Bundle, digits_data: Path) -> None:
    code = main(["quantize", str(trusted_digits.path), "--data", str(digits_data / "train"), "--max-top1-drop", "5"])
    assert code == 0
    bundle = read_bundle(trusted_digits.path)  # hashes of model.int8.onnx and trust.int8.safetensors verified
    record = bundle.spec.quantization
    assert record is not None and record.within_bound and record.trust is not None
    assert record.trust.file == INT8_TRUST_FILE and INT8_TRUST_FILE in bundle.spec.files

    # What int8 outputs on the validation images, computed here independently of the export.
    splits = recorded_splits(bundle.path, digits_data / "train", None, None)
    logits, embeddings, labels = _outputs(bundle.file(INT8_ONNX_FILE), splits.val)
    trust, arrays = trust_for(bundle, "int8")
    assert trust is not None and trust.calibration is not None and trust.conformal is not None
    assert trust.calibration.temperature == pytest.approx(fit_temperature(logits, labels), rel=1e-6)
    int8_scorer = scorer_for(bundle, "int8")
    probs = int8_scorer.probabilities(logits)
    expected = np.sort(true_label_scores(probs, labels, trust.conformal.score))
    np.testing.assert_allclose(arrays["conformal_scores"], expected, rtol=1e-6)
    # The OOD threshold lets through the intended share of int8's own validation images; the reference is fp32's.
    assert trust.ood is not None
    passed = np.mean(int8_scorer(logits, embeddings).out_of_distribution == False)  # noqa: E712
    assert passed == pytest.approx(trust.ood.pass_rate, abs=2 / len(labels))
    fp32_trust, fp32_arrays = trust_for(bundle, "fp32")
    assert fp32_trust == bundle.spec.trust and fp32_trust is not None and fp32_trust.file == TRUST_FILE
    for name, array in fp32_arrays.items():
        if name != "conformal_scores":
            np.testing.assert_array_equal(arrays[name], array)


def test_trust_for_a_bundle_without_trust(digits_bundle: Bundle) -> None:
    # The digits bundle as an older release wrote it: no trust data, no int8 record.
    older = dataclasses.replace(
        digits_bundle, spec=digits_bundle.spec.model_copy(update={"trust": None, "quantization": None})
    )
    for precision in ("fp32", "int8"):
        trust, arrays = trust_for(older, precision)  # type: ignore[arg-type]
        assert trust is None and arrays == {}
        assert not scorer_for(older, precision).calibrated  # type: ignore[arg-type]


def test_int8_beyond_its_bound_drops_int8_trust(trusted_digits: Bundle, digits_data: Path) -> None:
    main(["quantize", str(trusted_digits.path), "--data", str(digits_data / "train"), "--max-top1-drop", "5"])
    assert INT8_TRUST_FILE in read_bundle(trusted_digits.path).spec.files
    # A bound nothing can meet: int8 withdrawn, and with it the trust data fitted on it.
    main(["quantize", str(trusted_digits.path), "--data", str(digits_data / "train"), "--max-top1-drop", "-50"])
    bundle = read_bundle(trusted_digits.path)
    assert bundle.spec.quantization is not None and not bundle.spec.quantization.within_bound
    assert INT8_TRUST_FILE not in bundle.spec.files and not (bundle.path / INT8_TRUST_FILE).exists()
    assert bundle.spec.quantization.trust is None

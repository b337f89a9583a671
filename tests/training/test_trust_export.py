"""Issue 18 at export: the trust data a fitted bundle carries (temperature, conformal scores, OOD reference), what
too few validation images give, what ``evaluate`` prints about it, and the report's Trust section."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from modelspec import Bundle, read_bundle
from modelspec.trust import TRUST_FILE, TrustScorer, load_tensors
from modelspec.trust.scorer import CONFORMAL_SCORES, MAHALANOBIS_MEANS
from tests.training.folders import write_images
from training.cli import main

DIGITS_VAL_IMAGES = 269  # the 20 % stratified split of the digits' 1,347 training images


def test_fitted_bundle_carries_its_trust_data_hashed_in_model_json(digits_bundle: Bundle) -> None:
    spec = digits_bundle.spec
    assert spec.calibrated
    record = json.loads((digits_bundle.path / "model.json").read_text())
    trust = record["trust"]
    assert trust["file"] == TRUST_FILE
    data = (digits_bundle.path / TRUST_FILE).read_bytes()
    assert record["files"][TRUST_FILE] == hashlib.sha256(data).hexdigest()
    calibration = trust["calibration"]
    assert calibration["images"] == DIGITS_VAL_IMAGES
    assert 0.2 < calibration["temperature"] < 5
    assert calibration["nll_after"] <= calibration["nll_before"]  # the temperature minimises the validation NLL
    assert sum(calibration["reliability_after"]["counts"]) == DIGITS_VAL_IMAGES
    assert len(calibration["reliability_before"]["edges"]) == 16  # 15 bins
    assert trust["conformal"] == {"score": "lac", "images": DIGITS_VAL_IMAGES, "lam": 0.0, "k_reg": 0}
    ood = trust["ood"]
    assert ood["method"] == "mahalanobis" and ood["pass_rate"] == 0.95
    assert ood["validation_images"] == DIGITS_VAL_IMAGES
    assert ood["training_images"] == ood["reference_images"] == 1347 - DIGITS_VAL_IMAGES
    assert ood["threshold"] > 0
    tensors = load_tensors(digits_bundle.file(TRUST_FILE))
    assert tensors[CONFORMAL_SCORES].shape == (DIGITS_VAL_IMAGES,)
    assert np.all(np.diff(tensors[CONFORMAL_SCORES]) >= 0)  # sorted
    assert tensors[MAHALANOBIS_MEANS].shape == (10, spec.embedding_size)  # LeNet's 84 dims: no projection
    assert TrustScorer.from_bundle(digits_bundle).coverage_range == pytest.approx((1 / 270, 269 / 270))


def test_report_shows_temperature_ece_nll_and_ood_threshold_with_a_reliability_diagram(digits_bundle: Bundle) -> None:
    run_dir = Path(digits_bundle.spec.hyperparameters["run_dir"])
    report = (run_dir / "report.md").read_text()
    trust = digits_bundle.spec.trust
    assert trust is not None and trust.calibration is not None and trust.ood is not None
    section = report[report.index("## Trust") :]
    assert f"temperature {trust.calibration.temperature:.3f} fitted on {DIGITS_VAL_IMAGES} validation images" in section
    assert (
        f"ECE (15 bins) {trust.calibration.ece_before:.4f} before, {trust.calibration.ece_after:.4f} after" in section
    )
    assert f"NLL {trust.calibration.nll_before:.4f} before, {trust.calibration.nll_after:.4f} after" in section
    assert f"threshold {trust.ood.threshold:.4g} lets 95% of the {DIGITS_VAL_IMAGES} validation images pass" in section
    figure = run_dir / "reliability.png"
    assert figure.is_file() and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def write_overconfident_data(root: Path) -> Path:
    """Training images whose colour gives the class away, validation images of which 3 in 10 carry the label of
    another colour: the network learns to be sure, and is wrong 30 % of the time on validation."""
    names = ["red", "green", "blue"]
    write_images(root / "train", dict.fromkeys(names, 30), size=16)
    write_images(root / "val", dict.fromkeys(names, 7), size=16, seed=1)
    write_images(root / "swap", dict.fromkeys(names, 3), size=16, seed=2)
    for i, name in enumerate(names):
        for path in (root / "swap" / name).iterdir():
            shutil.move(path, root / "val" / names[(i + 1) % 3] / f"swapped-{path.name}")
    return root


def small_fit(data: Path, val: Path, models: Path, run: Path, epochs: int) -> list[str]:
    return [
        "fit", "--data", str(data), "--val-data", str(val), "--backbone", "lenet5", "--epochs", str(epochs),
        "--image-size", "16", "--lr", "0.01", "--dropout", "0", "--augment", "none", "--workers", "0",
        "--models-dir", str(models), "--run-dir", str(run), "--name", "small", "--quiet",
    ]  # fmt: skip


def test_temperature_scaling_lowers_the_ece_of_an_over_confident_model(tmp_path: Path) -> None:
    data = write_overconfident_data(tmp_path / "data")
    assert main(small_fit(data / "train", data / "val", tmp_path / "models", tmp_path / "run", 4)) == 0
    bundle = read_bundle(tmp_path / "models" / "small" / "1")
    calibration = bundle.spec.trust.calibration  # type: ignore[union-attr]
    assert calibration is not None and calibration.images == 30
    assert calibration.temperature > 1.2  # over-confident: the logits are scaled down
    assert calibration.ece_after <= calibration.ece_before
    assert calibration.nll_after < calibration.nll_before


@pytest.mark.parametrize(
    ("val_per_class", "calibrated", "says"),
    [(2, False, "not calibrated: 6 validation images"), (5, True, "calibration only: 15 validation images")],
)
def test_too_few_validation_images_export_calibration_only_or_nothing_and_say_so(
    val_per_class: int,
    calibrated: bool,
    says: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    counts = {"red": 12, "green": 12, "blue": 12}
    train = write_images(tmp_path / "train", counts, size=16)
    val = write_images(tmp_path / "val", dict.fromkeys(counts, val_per_class), size=16, seed=1)
    with caplog.at_level(logging.WARNING, logger="training"):
        assert main(small_fit(train, val, tmp_path / "models", tmp_path / "run", 1)) == 0
    assert any(says in record.getMessage() for record in caplog.records)
    bundle = read_bundle(tmp_path / "models" / "small" / "1")
    spec = bundle.spec
    assert spec.calibrated is calibrated
    assert not (bundle.path / TRUST_FILE).exists() and TRUST_FILE not in spec.files
    record = json.loads((bundle.path / "model.json").read_text())
    if calibrated:
        assert record["trust"]["calibration"]["images"] == 3 * val_per_class
        assert record["trust"]["conformal"] is None and record["trust"]["ood"] is None
    else:
        assert "trust" not in record  # no invented numbers
    report = capsys.readouterr().out
    section = report[report.index("## Trust") :]
    if calibrated:
        assert "no prediction sets and no OOD flag: 15 validation images, at least 20 needed" in section
    else:
        assert "not calibrated: 6 validation images" in section
        assert not (tmp_path / "run" / "reliability.png").exists()
    # evaluate says what the bundle serves
    assert main(["evaluate", str(bundle.path), str(val)]) == 0
    printed = capsys.readouterr().out
    assert "prediction sets: none" in printed and "out-of-distribution: no score" in printed
    expected = "served probabilities: calibrated (temperature" if calibrated else "not calibrated (plain softmax)"
    assert expected in printed


def test_evaluate_prints_ece_set_coverage_and_the_share_flagged(
    digits_bundle: Bundle, digits_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(digits_bundle.path), str(digits_data / "test"), "--output", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    trust = json.loads((tmp_path / "metrics.json").read_text())["trust"]
    temperature = digits_bundle.spec.trust.calibration.temperature  # type: ignore[union-attr]
    assert trust["calibrated"] and trust["temperature"] == pytest.approx(temperature)
    assert f"served probabilities: calibrated (temperature {temperature:.3f}), ECE {trust['ece']:.4f} (15 bins)" in (
        printed
    )
    assert 0 <= trust["ece"] < 0.1
    sets = trust["sets"]
    assert 0.85 <= sets["coverage"] <= 1.0 and 1.0 <= sets["mean_size"] < 2.0  # 90 % sets of a 96 % accurate model
    assert (
        f"prediction sets at 90%: they hold the true label for {sets['coverage']:.1%} of the 450 images, "
        f"{sets['mean_size']:.2f} labels on average" in printed
    )
    ood = trust["ood"]
    assert ood["method"] == "mahalanobis" and 0 <= ood["flagged_share"] <= 0.15  # held-out digits: about 5 %
    assert f"out-of-distribution: {ood['flagged']} of 450 images flagged ({ood['flagged_share']:.1%};" in printed


def test_pretrained_imagenet_default_stays_uncalibrated(default_bundle: Bundle) -> None:
    """``export-pretrained`` has no validation images offline: no temperature, sets or OOD data is made up."""
    assert default_bundle.spec.calibrated is False
    assert default_bundle.spec.trust is None
    assert "trust" not in json.loads((default_bundle.path / "model.json").read_text())
    assert not (default_bundle.path / TRUST_FILE).exists()

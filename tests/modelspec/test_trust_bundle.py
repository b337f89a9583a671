"""The trust data travels in the bundle: built at export, written as model.json fields + safetensors, and served by
``TrustScorer`` with the same numbers; bundles without it read unchanged and say they are not calibrated."""

import json
from pathlib import Path

import numpy as np
import pytest

from modelspec import ONNX_FILE, SPEC_FILE, WEIGHTS_FILE, read_bundle, write_bundle
from modelspec.trust import TRUST_FILE, CoverageError, TrustScorer, build_trust, save_tensors, softmax
from tests.conftest import tiny_spec

CLASSES = 3  # tiny_spec's labels


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings clustered by class, and over-confident logits that mostly agree with the class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    centres = np.random.default_rng(99).normal(size=(CLASSES, 84))
    embeddings = centres[labels] + 0.5 * rng.normal(size=(n, 84))
    logits = 4.0 * (np.eye(CLASSES)[labels] + rng.normal(scale=0.8, size=(n, CLASSES)))
    return logits.astype(np.float32), embeddings.astype(np.float32), labels


def _write(models_dir: Path, **options: object) -> Path:
    val_logits, val_emb, val_labels = _split(600, 1)
    _, train_emb, train_labels = _split(2_000, 2)
    trust, tensors = build_trust(val_logits, val_labels, val_emb, train_emb, train_labels, **options)  # type: ignore[arg-type]
    writers = {
        WEIGHTS_FILE: lambda p: p.write_bytes(b"w"),
        ONNX_FILE: lambda p: p.write_bytes(b"g"),
        TRUST_FILE: lambda p: save_tensors(p, tensors),
    }
    return write_bundle(models_dir, tiny_spec().model_copy(update={"trust": trust}), writers).path  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["knn", "mahalanobis", "energy", "msp"])
def test_served_numbers_equal_the_exported_ones(tmp_path: Path, method: str) -> None:
    bundle = read_bundle(_write(tmp_path, ood_method=method, k=20, cap=500, dims=16))
    assert bundle.spec.calibrated and bundle.spec.trust is not None
    calibration, ood = bundle.spec.trust.calibration, bundle.spec.trust.ood
    assert calibration is not None and ood is not None
    assert calibration.temperature > 1.0 and calibration.ece_after < calibration.ece_before
    scorer = TrustScorer.from_bundle(bundle)
    logits, embeddings, labels = _split(600, 1)  # the validation images again
    result = scorer(logits, embeddings, coverage=0.9)
    assert result.probs == pytest.approx(softmax(logits, calibration.temperature))
    assert result.out_of_distribution is not None and result.sets is not None
    # The threshold was set on these images, through the same scorer, from the arrays as stored.
    passed = 1 - result.out_of_distribution.mean()
    assert ood.pass_rate <= passed <= ood.pass_rate + 2 / 600
    # On its own calibration images a 90 % set covers at least ceil(0.9 * 601) / 600 of them.
    assert result.sets.mask[np.arange(600), labels].mean() >= 541 / 600


def test_ood_flags_images_unlike_the_training_ones(tmp_path: Path) -> None:
    scorer = TrustScorer.from_bundle(read_bundle(_write(tmp_path, k=20, cap=500, dims=16)))
    logits, embeddings, _ = _split(200, 3)
    inside = scorer(logits, embeddings).out_of_distribution
    outside = scorer(logits, np.random.default_rng(4).normal(size=(200, 84)) * 3).out_of_distribution
    assert inside is not None and outside is not None
    assert inside.mean() < 0.15 and outside.mean() > 0.95


def test_unservable_coverage_names_the_levels(tmp_path: Path) -> None:
    scorer = TrustScorer.from_bundle(read_bundle(_write(tmp_path)))
    assert scorer.coverage_range == pytest.approx((1 / 601, 600 / 601))
    with pytest.raises(CoverageError, match=r"600 calibration images .* from 0\.001664 to 0\.9983"):
        scorer(np.zeros((1, CLASSES)), np.ones((1, 84)), coverage=0.999)


def test_trust_fields_survive_model_json(tmp_path: Path) -> None:
    path = _write(tmp_path)
    raw = json.loads((path / SPEC_FILE).read_text())
    assert raw["trust"]["file"] == TRUST_FILE and raw["trust"]["ood"]["method"] == "mahalanobis"
    assert raw["trust"]["ood"]["dtype"] == "float16" and raw["trust"]["conformal"]["score"] == "lac"
    assert TRUST_FILE in raw["files"]  # hashed like every file of the bundle


def test_bundle_without_trust_data_is_uncalibrated(tmp_path: Path) -> None:
    writers = {WEIGHTS_FILE: lambda p: p.write_bytes(b"w"), ONNX_FILE: lambda p: p.write_bytes(b"g")}
    path = write_bundle(tmp_path, tiny_spec(), writers).path  # type: ignore[arg-type]
    assert "trust" not in json.loads((path / SPEC_FILE).read_text())  # written as an older release wrote it
    bundle = read_bundle(path)
    assert bundle.spec.trust is None and not bundle.spec.calibrated
    scorer = TrustScorer.from_bundle(bundle)
    logits = np.array([[2.0, 0.0, -1.0]])
    result = scorer(logits, np.ones((1, 84)))
    assert result.probs == pytest.approx(softmax(logits)) and result.ood_score is None and scorer.coverage_range is None
    with pytest.raises(CoverageError, match="no conformal calibration data"):
        scorer(logits, np.ones((1, 84)), coverage=0.9)


def test_trust_is_light_at_import() -> None:
    """The service imports it: numpy and safetensors only, never torch, scipy or scikit-learn."""
    import subprocess
    import sys

    code = "import sys, modelspec.trust; print(sorted({'torch', 'scipy', 'sklearn'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

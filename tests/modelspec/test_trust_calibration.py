import numpy as np
import pytest

from modelspec.trust import ece, fit_temperature, nll, reliability_bins, softmax


def _calibrated(n: int, classes: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is the true label distribution: labels are drawn from it, so T = 1 is right."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, classes))
    probs = softmax(logits)
    labels = (probs.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return logits, labels


def test_temperature_one_is_recovered_on_calibrated_logits() -> None:
    logits, labels = _calibrated(20_000)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.05)
    assert ece(softmax(logits), labels) < 0.02


def test_over_confident_logits_get_their_temperature_back_and_lower_ece() -> None:
    logits, labels = _calibrated(20_000, seed=1)
    sharp = 3.0 * logits  # the same ranking, three times too confident
    t = fit_temperature(sharp, labels)
    assert t == pytest.approx(3.0, rel=0.05)
    assert ece(softmax(sharp, t), labels) < ece(softmax(sharp), labels) / 3
    assert nll(sharp, labels, t) < nll(sharp, labels)
    assert (softmax(sharp, t).argmax(1) == sharp.argmax(1)).all()  # scaling never changes a prediction


def test_under_confident_logits_get_a_temperature_below_one() -> None:
    logits, labels = _calibrated(20_000, seed=2)
    assert fit_temperature(logits / 2.0, labels) == pytest.approx(0.5, rel=0.05)


def test_ece_and_bins_by_hand() -> None:
    # Two images at confidence 0.9 (one right), two at 0.6 (both right): |0.5-0.9|*2/4 + |1-0.6|*2/4 = 0.4.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])
    bins = reliability_bins(probs, labels, bins=10)
    assert bins.counts == [0, 0, 0, 0, 0, 2, 0, 0, 2, 0]  # 0.6 in (0.5, 0.6], 0.9 in (0.8, 0.9]
    assert bins.accuracy[8] == 0.5 and bins.confidence[8] == pytest.approx(0.9)
    assert ece(probs, labels, bins=10) == pytest.approx(0.4)


def test_bad_input_says_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="one label per row"):
        fit_temperature(np.zeros((3, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        fit_temperature(np.zeros((2, 2)), np.array([0, 2]))
    with pytest.raises(ValueError, match="NaN"):
        fit_temperature(np.array([[np.nan, 0.0]]), np.array([0]))

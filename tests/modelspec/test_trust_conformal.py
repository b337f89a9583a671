import numpy as np
import pytest

from modelspec.trust import CoverageError, coverage_range, prediction_sets, softmax, true_label_scores
from modelspec.trust.conformal import SCORES, label_scores, threshold


def test_aps_and_raps_scores_by_hand() -> None:
    probs = np.array([[0.2, 0.5, 0.3]])
    assert label_scores(probs, "lac") == pytest.approx(np.array([[0.8, 0.5, 0.7]]))
    # APS: the mass of the labels ranked above: 0.5 + 0.3 | 0 | 0.5.
    assert label_scores(probs, "aps") == pytest.approx(np.array([[0.8, 0.0, 0.5]]))
    # RAPS adds lam per rank beyond k_reg: ranks 3, 1, 2 -> +0.2, 0, +0.1.
    assert label_scores(probs, "raps", lam=0.1, k_reg=1) == pytest.approx(np.array([[1.0, 0.0, 0.6]]))


def test_threshold_is_the_finite_sample_quantile() -> None:
    scores = np.arange(1, 10) / 10.0  # n = 9
    assert threshold(scores, 0.5) == pytest.approx(0.5)  # ceil(10 * 0.5) = 5th smallest
    assert threshold(scores, 0.85) == pytest.approx(0.9)  # ceil(8.5) = 9th
    assert threshold(scores, 0.9) == pytest.approx(0.9)  # ceil(10 * 0.9) = 9th: the largest level served
    assert coverage_range(9) == (0.1, 0.9)


@pytest.mark.parametrize("coverage", [0.95, 1.0, 0.0, -0.5])
def test_unservable_level_names_the_range(coverage: float) -> None:
    with pytest.raises(CoverageError, match=r"with 9 calibration images .* from 0\.1 to 0\.9"):
        threshold(np.arange(1, 10) / 10.0, coverage)


def _exchangeable(n: int, classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    logits = rng.normal(scale=2.0, size=(n, classes))
    labels = (softmax(logits).cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return softmax(1.5 * logits), labels  # a mis-calibrated model: the guarantee must not depend on calibration


@pytest.mark.parametrize("score", SCORES)
def test_coverage_holds_over_many_random_splits(score: str) -> None:
    rng = np.random.default_rng(0)
    probs, labels = _exchangeable(40 * 1_000, 8, rng)
    exact, served = [], []
    for split in range(40):
        order = rng.permutation(len(labels))
        cal, test = order[:300], order[300:2_300]
        stored = np.sort(true_label_scores(probs[cal], labels[cal], score))  # type: ignore[arg-type]
        plain = prediction_sets(probs[test], stored, 0.9, score, include_top=False).mask  # type: ignore[arg-type]
        mask = prediction_sets(probs[test], stored, 0.9, score).mask  # type: ignore[arg-type]
        exact.append(plain[np.arange(len(test)), labels[test]].mean())
        served.append(mask[np.arange(len(test)), labels[test]].mean())
        assert split or mask.sum(1).mean() < 8  # the sets say something: not every label
    # Marginal guarantee: 0.9 <= E[coverage] <= 0.9 + 1/(n+1) for continuous scores; the mean of 40 splits.
    assert 0.895 <= float(np.mean(exact)) <= 0.9 + 1 / 301 + 0.006
    # The served sets (top-1 label always in) only add labels: never below.
    assert float(np.mean(served)) >= float(np.mean(exact))


def test_sets_grow_with_the_coverage() -> None:
    rng = np.random.default_rng(1)
    probs, labels = _exchangeable(2_000, 8, rng)
    stored = np.sort(true_label_scores(probs[:1_000], labels[:1_000], "lac"))
    small = prediction_sets(probs[1_000:], stored, 0.5, "lac").mask
    large = prediction_sets(probs[1_000:], stored, 0.99, "lac").mask
    assert (small <= large).all() and large.sum() > small.sum()


def test_a_set_always_holds_the_top_label() -> None:
    # An unsure image: no label is likely enough for LAC's threshold (1 - p > 0.3 for all), so the set would be empty.
    stored = np.sort(np.linspace(0.1, 0.3, 99))
    probs = np.array([[0.4, 0.35, 0.25]])
    assert prediction_sets(probs, stored, 0.9, "lac", include_top=False).mask.sum() == 0
    assert prediction_sets(probs, stored, 0.9, "lac").indices(0) == [0]
    # APS and RAPS score the top label 0: it is in every set.
    assert prediction_sets(probs, stored / 10, 0.9, "aps", include_top=False).indices(0) == [0]

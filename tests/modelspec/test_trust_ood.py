import math

import numpy as np
import pytest

from modelspec.trust import KnnReference, MahalanobisReference, auroc, energy_score, fpr_at_95_tpr, msp_score
from modelspec.trust.ood import l2_normalise, pass_threshold


def test_knn_distance_exact_on_a_tiny_set() -> None:
    reference = KnnReference.build(np.array([[1.0, 0.0], [0.0, 5.0], [2.0, 2.0]]), k=1)
    # Queries are normalised too: 3 * e1 sits on the first point; e1 + e2 on the third (float32: sqrt(1e-7)).
    assert reference.score(np.array([[3.0, 0.0], [1.0, 1.0]])) == pytest.approx([0.0, 0.0], abs=1e-3)
    assert reference.score(np.array([[0.0, 1.0]]))[0] == pytest.approx(0.0, abs=1e-3)
    second = KnnReference.build(np.array([[1.0, 0.0], [0.0, 5.0], [2.0, 2.0]]), k=2)
    # From e1, the second nearest is (e1 + e2) / sqrt 2: |e1 - that|^2 = 2 - 2 / sqrt 2.
    assert second.score(np.array([[1.0, 0.0]]))[0] == pytest.approx(math.sqrt(2 - 2 / math.sqrt(2)), abs=1e-6)


def test_knn_too_few_reference_images() -> None:
    with pytest.raises(ValueError, match="k=5 needs at least 5"):
        KnnReference.build(np.eye(3), k=5)


def test_knn_cap_and_projection_keep_near_points_near() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 64))
    train = np.repeat(centres, 300, axis=0) + 0.3 * rng.normal(size=(1_200, 64))
    reference = KnnReference.build(train, k=10, cap=400, dims=8)
    assert reference.points.shape == (400, 8)
    near = centres[:2] + 0.3 * rng.normal(size=(2, 64))
    far = rng.normal(size=(2, 64))
    assert reference.score(near).max() < reference.score(far).min()


def test_projection_keeps_knn_distances_when_it_spans_the_data() -> None:
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.normal(size=(64, 5)))[0].T  # the data lie in a 5-dim subspace of 64 dims
    train, queries = rng.normal(size=(300, 5)) @ basis, rng.normal(size=(20, 5)) @ basis
    full = KnnReference.build(train, k=7).score(queries)
    projected = KnnReference.build(train, k=7, dims=8)  # normalising adds no dimension: 5 of the 8 carry it all
    assert projected.points.shape == (300, 8)
    assert projected.score(queries) == pytest.approx(full, abs=1e-3)


def test_mahalanobis_matches_the_direct_formula() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)) + 3.0
    labels = np.repeat(np.arange(4), 50)
    reference = MahalanobisReference.build(x, labels, shrinkage=0.1)
    unit = l2_normalise(x).astype(np.float64)
    means = np.stack([unit[labels == c].mean(0) for c in range(4)])
    centred = unit - means[labels]
    cov = centred.T @ centred / (200 - 4)
    cov = 0.9 * cov + 0.1 * np.trace(cov) / 6 * np.eye(6)
    precision = np.linalg.inv(cov)
    queries = rng.normal(size=(5, 6)) + 3.0
    q = l2_normalise(queries).astype(np.float64)
    direct = np.array([min((v - m) @ precision @ (v - m) for m in means) for v in q])
    assert reference.score(queries) == pytest.approx(direct, rel=1e-3)


def test_energy_and_msp() -> None:
    assert energy_score(np.array([[0.0, 0.0]]))[0] == pytest.approx(-math.log(2))
    assert msp_score(np.array([[0.7, 0.3]]))[0] == pytest.approx(0.3)


def test_auroc_against_counting_pairs() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 40).astype(float), rng.integers(2, 8, 30).astype(float)  # with ties
    pairs = [(1.0 if y > x else 0.5 if y == x else 0.0) for x in a for y in b]
    assert auroc(a, b) == pytest.approx(float(np.mean(pairs)))
    assert auroc(np.zeros(3), np.ones(3)) == 1.0 and auroc(np.ones(3), np.zeros(3)) == 0.0


def test_threshold_lets_the_pass_rate_through_and_fpr() -> None:
    inside = np.arange(1.0, 101.0)
    cut = pass_threshold(inside, 0.95)
    assert cut == 95.0 and (inside <= cut).mean() == pytest.approx(0.95)
    assert fpr_at_95_tpr(inside, np.array([10.0, 99.0, 200.0, 300.0])) == 0.25

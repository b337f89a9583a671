"""The numbers of the trust benchmark, from logits and embeddings (no model runs here except in ``latency``)."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from modelspec.trust import (
    auroc,
    ece,
    fit_temperature,
    fpr_at_95_tpr,
    nll,
    softmax,
    true_label_scores,
)
from modelspec.trust.build import REFERENCE_CAP, REFERENCE_DIMS, build_trust
from modelspec.trust.conformal import SCORES, prediction_sets
from modelspec.trust.ood import KNN_K
from modelspec.trust.scorer import TrustScorer, save_tensors
from scripts.bench.trust.data import Outputs

COVERAGE = 0.9


@dataclass
class CalibrationResult:
    temperature: float
    val_images: int
    test_images: int
    accuracy: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float


def calibration(val: Outputs, test: Outputs) -> CalibrationResult:
    """T fitted on the validation images, judged on the test images."""
    t = fit_temperature(val.logits, val.labels)
    return CalibrationResult(
        temperature=t,
        val_images=len(val.labels),
        test_images=len(test.labels),
        accuracy=float((test.logits.argmax(1) == test.labels).mean()),
        ece_before=ece(softmax(test.logits), test.labels),
        ece_after=ece(softmax(test.logits, t), test.labels),
        nll_before=nll(test.logits, test.labels),
        nll_after=nll(test.logits, test.labels, t),
    )


@dataclass
class ConformalResult:
    score: str
    coverage: list[float] = field(default_factory=list)  # per split
    size: list[float] = field(default_factory=list)  # mean set size per split
    worst_class: list[float] = field(default_factory=list)  # lowest per-class coverage per split
    single: list[float] = field(default_factory=list)  # share of one-label sets per split


def conformal(pool: Outputs, calibration_images: int, splits: int, seed: int = 0) -> list[ConformalResult]:
    """Random calibration/test splits of the labelled held-out images, as export would do it on each: T and the
    conformal scores from the calibration part, 90 % sets judged on the rest."""
    results = {score: ConformalResult(score) for score in SCORES}
    rng = np.random.default_rng(seed)
    classes = np.unique(pool.labels)
    for _ in range(splits):
        order = rng.permutation(len(pool.labels))
        cal, test = order[:calibration_images], order[calibration_images:]
        t = fit_temperature(pool.logits[cal], pool.labels[cal])
        cal_probs, test_probs = softmax(pool.logits[cal], t), softmax(pool.logits[test], t)
        labels = pool.labels[test]
        for score in SCORES:
            stored = np.sort(true_label_scores(cal_probs, pool.labels[cal], score))
            mask = prediction_sets(test_probs, stored, COVERAGE, score).mask
            covered = mask[np.arange(len(labels)), labels]
            result = results[score]
            result.coverage.append(float(covered.mean()))
            result.size.append(float(mask.sum(1).mean()))
            result.worst_class.append(float(min(covered[labels == c].mean() for c in classes)))
            result.single.append(float((mask.sum(1) == 1).mean()))
    return list(results.values())


@dataclass
class OodRow:
    method: str
    auroc: dict[str, float]  # case -> AUROC
    fpr95: dict[str, float]  # case -> FPR at 95 % TPR
    flagged: dict[str, float]  # case (and "known test") -> share flagged at the validation threshold


OOD_VARIANTS: dict[str, dict[str, object]] = {
    # name -> build_trust options; each is built, stored (float16) and scored as the service would.
    f"kNN (k={KNN_K}, all dims)": {"ood_method": "knn", "cap": None, "dims": None},
    f"kNN (k={KNN_K}, <= {REFERENCE_CAP:,} images, {REFERENCE_DIMS} dims)": {"ood_method": "knn"},
    "Mahalanobis (all dims)": {"ood_method": "mahalanobis", "dims": None},
    f"Mahalanobis ({REFERENCE_DIMS} dims)": {"ood_method": "mahalanobis"},
    f"Mahalanobis ({REFERENCE_DIMS // 2} dims)": {"ood_method": "mahalanobis", "dims": REFERENCE_DIMS // 2},
    "energy": {"ood_method": "energy"},
    "max softmax (MSP)": {"ood_method": "msp"},
}


def scorer_for(options: dict[str, object], train: Outputs, val: Outputs) -> TrustScorer:
    """What export would store with these options, loaded as the service loads it."""
    trust, tensors = build_trust(val.logits, val.labels, val.embeddings, train.embeddings, train.labels, **options)  # type: ignore[arg-type]
    return TrustScorer(trust, tensors)


def ood_scores(scorer: TrustScorer, outputs: Outputs) -> npt.NDArray[np.float64]:
    return scorer.ood_scores(outputs.logits, scorer.probabilities(outputs.logits), outputs.embeddings)


def ood(train: Outputs, val: Outputs, known: Outputs, cases: dict[str, Outputs]) -> list[OodRow]:
    rows = []
    for name, options in OOD_VARIANTS.items():
        scorer = scorer_for(options, train, val)
        assert scorer.ood is not None
        inside = ood_scores(scorer, known)
        row = OodRow(name, {}, {}, {"known test": float((inside > scorer.ood.threshold).mean())})
        for case, outputs in cases.items():
            outside = ood_scores(scorer, outputs)
            row.auroc[case] = auroc(inside, outside)
            row.fpr95[case] = fpr_at_95_tpr(inside, outside)
            row.flagged[case] = float((outside > scorer.ood.threshold).mean())
        rows.append(row)
    return rows


@dataclass
class CostRow:
    method: str
    reference: str
    stored_bytes: int
    us_per_image: float  # batch of 1, median
    kept: bool = False


def synthetic(
    images: int, dims: int, classes: int, seed: int = 0
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Clustered non-negative embeddings (pooled ReLU-like features) with labels: right size and layout."""
    rng = np.random.default_rng(seed)
    centres = rng.gamma(1.0, 1.0, size=(classes, dims)).astype(np.float32)
    labels = rng.integers(0, classes, size=images)
    noise = rng.gamma(1.0, 0.5, size=(images, dims)).astype(np.float32)
    return centres[labels] + noise, labels


def median_us(call: Callable[[], object], repeats: int) -> float:
    for _ in range(5):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def stored_size(tensors: dict[str, npt.NDArray[np.generic]]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.safetensors"
        save_tensors(path, tensors)
        return path.stat().st_size


def cost(
    images: int, dims: int, classes: int, repeats: int, kept_options: dict[str, object]
) -> tuple[list[CostRow], TrustScorer]:
    """Per-image scoring cost and stored size of each method with a reference from ``images`` training embeddings;
    returns the kept method's scorer (for the latency check)."""
    train, labels = synthetic(images, dims, classes)
    val, val_labels = synthetic(500, dims, classes, seed=1)
    rng = np.random.default_rng(2)
    val_logits = rng.normal(size=(len(val_labels), classes)).astype(np.float32)
    val_logits[np.arange(len(val_labels)), val_labels] += 4.0
    one_e, one_z = val[:1], val_logits[:1]
    rows = []
    kept: TrustScorer | None = None
    small = REFERENCE_DIMS // 2
    variants: list[tuple[str, str, dict[str, object]]] = [
        ("kNN", f"all {images:,} x {dims}", {"ood_method": "knn", "cap": None, "dims": None}),
        ("kNN", f"{REFERENCE_CAP:,} x {dims}", {"ood_method": "knn", "cap": REFERENCE_CAP, "dims": None}),
        ("kNN", f"{REFERENCE_CAP:,} x {REFERENCE_DIMS} + projection", {"ood_method": "knn"}),
        ("Mahalanobis", f"{dims} x {dims} + {classes} means", {"ood_method": "mahalanobis", "dims": None}),
        ("Mahalanobis", f"{REFERENCE_DIMS}^2 + {classes} means + projection", {"ood_method": "mahalanobis"}),
        ("Mahalanobis", f"{small}^2 + {classes} means + projection", {"ood_method": "mahalanobis", "dims": small}),
        ("energy", "none", {"ood_method": "energy"}),
        ("MSP", "none", {"ood_method": "msp"}),
    ]
    for method, reference, options in variants:
        trust, tensors = build_trust(val_logits, val_labels, val, train, labels, **options)  # type: ignore[arg-type]
        scorer = TrustScorer(trust, tensors)
        probs = scorer.probabilities(one_z)
        us = median_us(lambda s=scorer, p=probs: s.ood_scores(one_z, p, one_e), repeats)  # type: ignore[misc]
        ood_bytes = (
            stored_size({k: v for k, v in tensors.items() if k != "conformal_scores"}) if len(tensors) > 1 else 0
        )
        rows.append(CostRow(method, reference, ood_bytes, us, kept=options == kept_options))
        if options == kept_options:
            kept = scorer
    assert kept is not None
    return rows, kept


@dataclass
class Latency:
    model: str
    rounds: int
    without_ms: float
    with_ms: float
    paired_ms: float  # median over alternating pairs of (with - without)

    @property
    def ratio(self) -> float:
        return self.with_ms / self.without_ms


def latency(bundle_dir: Path, scorer: TrustScorer, rounds: int) -> Latency:
    """One 640x480 JPEG at a time (c=1, in process): decode + preprocess + the ONNX model, then softmax and
    top-5, with and without the trust scorer, alternating call by call; medians."""
    from modelspec import load_input, read_bundle
    from scripts.bench.images import test_jpeg
    from scripts.bench.trust.data import Embedder

    bundle = read_bundle(bundle_dir)
    embedder = Embedder(bundle)
    jpeg = test_jpeg((640, 480))
    prep = bundle.spec.preprocessing

    def predict(trust: bool) -> None:
        array = load_input(jpeg, prep)
        logits, embeddings = embedder.run(array[None])
        if trust:
            result = scorer(logits, embeddings)
            probs = result.probs
        else:
            probs = softmax(logits)
        np.argsort(-probs, axis=1)[:, :5]

    for _ in range(10):
        predict(False)
        predict(True)
    without: list[float] = []
    with_: list[float] = []
    for _ in range(rounds):
        for flag, sink in ((False, without), (True, with_)):
            start = time.perf_counter()
            predict(flag)
            sink.append(time.perf_counter() - start)
    paired = statistics.median(b - a for a, b in zip(without, with_, strict=True)) * 1e3
    return Latency(f"{bundle.name}:{bundle.version}", rounds, statistics.median(without) * 1e3,
                   statistics.median(with_) * 1e3, paired)  # fmt: skip

"""The Trust section of a fit's report and its reliability diagram: what the bundle's calibration, prediction sets
and OOD threshold are (``model.json``'s ``trust``), or why it has none, in words and a figure."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from modelspec.files import write_atomically

if TYPE_CHECKING:
    from modelspec.bundle import Bundle
    from training.engine.run import RunContext

RELIABILITY_FIGURE = "reliability.png"


def trust_lines(context: RunContext, bundle: Bundle | None) -> list[str]:
    """What the bundle's trust data says (``model.json``'s ``trust``), or why it has none, in words."""
    from training.config import MIN_CALIBRATION_IMAGES, MIN_TRUST_IMAGES

    if bundle is None:
        return ["- not exported (--no-export): no calibration"]
    trust, n = bundle.spec.trust, len(context.data.val)
    calibration = trust.calibration if trust else None
    if calibration is None:
        return [
            f"- not calibrated: {n} validation images, temperature scaling needs at least {MIN_CALIBRATION_IMAGES}; "
            "the bundle serves plain softmax scores (calibrated: false), without prediction sets or OOD flag"
        ]
    lines = [
        f"- temperature {calibration.temperature:.3f} fitted on {calibration.images} validation images: served "
        "probabilities are softmax(logits / T) (T > 1: the network was over-confident, T < 1: under-confident)",
        f"- ECE (15 bins) {calibration.ece_before:.4f} before, {calibration.ece_after:.4f} after; NLL "
        f"{calibration.nll_before:.4f} before, {calibration.nll_after:.4f} after",
        f"- reliability diagram before and after: {context.run_dir / RELIABILITY_FIGURE}",
    ]
    conformal, ood = trust.conformal if trust else None, trust.ood if trust else None
    if conformal is None or ood is None:
        lines.append(f"- no prediction sets and no OOD flag: {n} validation images, at least {MIN_TRUST_IMAGES} needed")
        return lines
    lines.append(
        f"- prediction sets: {conformal.score.upper()} scores of {conformal.images} validation images; coverage "
        f"levels from {conformal.min_coverage:.4g} to {conformal.max_coverage:.4g} can be asked for"
    )
    dims = f", {ood.dims} principal directions" if ood.dims else ""
    lines.append(
        f"- out-of-distribution: {ood.method} score ({ood.reference_images} training embeddings{dims}); threshold "
        f"{ood.threshold:.4g} lets {ood.pass_rate:.0%} of the {ood.validation_images} validation images pass"
    )
    return lines


def plot_reliability(bundle: Bundle, path: Path) -> bool:
    """The reliability diagram before and after temperature scaling (accuracy against confidence per bin, bars
    for the bins' shares of images); False, and nothing written, when the bundle is not calibrated."""
    from matplotlib.figure import Figure

    trust = bundle.spec.trust
    calibration = trust.calibration if trust else None
    if calibration is None:
        return False
    figure = Figure(figsize=(10, 4.5), layout="constrained")
    panels = (
        ("before", calibration.reliability_before, calibration.ece_before),
        (f"after (T = {calibration.temperature:.2f})", calibration.reliability_after, calibration.ece_after),
    )
    for axes, (title, bins, error) in zip(figure.subplots(1, 2), panels, strict=True):
        left, width = bins.edges[:-1], [b - a for a, b in zip(bins.edges, bins.edges[1:], strict=False)]
        total = max(sum(bins.counts), 1)
        filled = [i for i, count in enumerate(bins.counts) if count]
        axes.bar(left, [c / total for c in bins.counts], width=width, align="edge", color="lightgrey",
                 edgecolor="grey", label="share of images")  # fmt: skip
        axes.plot([0, 1], [0, 1], "k--", linewidth=0.8, label="perfect calibration")
        axes.plot([bins.confidence[i] for i in filled], [bins.accuracy[i] for i in filled], "o-", label="accuracy")
        axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top-1 probability)", ylabel="accuracy",
                 title=f"{title}: ECE {error:.3f}")  # fmt: skip
        axes.grid(alpha=0.3)
        axes.legend(loc="upper left")
    write_atomically(path, lambda temporary: figure.savefig(temporary, dpi=100, format=path.suffix[1:]))
    return True

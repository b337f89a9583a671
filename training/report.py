"""What a run leaves for people: the per-epoch history (CSV, JSON), the learning curves and confusion matrix
(PNG), and a short report in plain words (``fit_report``), including a warning when the curves show overfitting.

Plots use matplotlib's object API with the Agg canvas, so no global backend is switched and no window opens.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelspec.files import write_atomically, write_text_atomically
from training.data.hints import looks_like_text
from training.diagnosis import generalisation_gap_note, imbalance_warning, overfitting_note, underfitting_note
from training.metrics import summary_line
from training.quantize.at_export import outcome_line
from training.trust_report import trust_lines

if TYPE_CHECKING:
    from modelspec.bundle import Bundle
    from training.engine.outcome import TrainingOutcome
    from training.engine.run import RunContext

logger = logging.getLogger(__name__)

HISTORY_FIELDS = (
    "epoch",
    "phase",
    "lr",
    "train_images",
    "train_loss",
    "train_accuracy",
    "train_macro_f1",
    "val_loss",
    "val_accuracy",
    "val_macro_f1",
    "seconds",
    "images_per_second",
)


def write_history(run_dir: Path, history: Sequence[dict[str, Any]]) -> None:
    """``history.csv`` and ``history.json``: one row per epoch."""
    with (run_dir / "history.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
    write_json(run_dir / "history.json", list(history))


def plot_curves(history: Sequence[dict[str, Any]], path: Path, best_epoch: int | None = None) -> None:
    """Loss and accuracy per epoch, training against validation; the best epoch and phase changes marked."""
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for axes, key, title in ((loss_axes, "loss", "Loss"), (accuracy_axes, "accuracy", "Accuracy")):
        axes.plot(epochs, [row[f"train_{key}"] for row in history], "o-", label="training")
        axes.plot(epochs, [row[f"val_{key}"] for row in history], "o-", label="validation")
        if best_epoch:
            axes.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch ({best_epoch})")
        for previous, row in zip(history, history[1:], strict=False):
            if row["phase"] != previous["phase"]:
                axes.axvline(row["epoch"] - 0.5, color="black", linestyle="--", linewidth=0.8, label=row["phase"])
        axes.set(title=title, xlabel="epoch")
        axes.grid(alpha=0.3)
        axes.legend()
    write_atomically(path, lambda temporary: figure.savefig(temporary, dpi=100, format=path.suffix[1:]))


def plot_confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str) -> None:
    """Rows are true classes, columns predictions; colours are shares of each true class, numbers are counts."""
    import numpy as np
    from matplotlib.figure import Figure

    counts = np.asarray(matrix)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.45 * len(labels) + 2)
    figure = Figure(figsize=(size + 1, size), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="share of the true class")
    ticks = range(len(labels))
    axes.set_xticks(ticks, labels, rotation=90)
    axes.set_yticks(ticks, labels)
    axes.set(xlabel="predicted", ylabel="true", title=title)
    if len(labels) <= 30:
        for (row, column), count in np.ndenumerate(counts):
            if count:
                colour = "white" if shares[row, column] > 0.5 else "black"
                axes.text(column, row, str(count), ha="center", va="center", fontsize=7, color=colour)
    write_atomically(path, lambda temporary: figure.savefig(temporary, dpi=100, format=path.suffix[1:]))


def write_metrics(
    run_dir: Path,
    metrics: dict[str, Any],
    classes: Sequence[str],
    model_name: str,
    splits: Sequence[str] = ("val", "test"),
) -> None:
    """``metrics.json`` and a ``confusion_<split>.png`` for each split scored (of ``splits``)."""
    write_json(run_dir / "metrics.json", metrics)
    for split in splits:
        if split in metrics:
            plot_confusion(
                metrics[split]["confusion_matrix"],
                classes,
                run_dir / f"confusion_{split}.png",
                f"{model_name}: {split} confusion matrix",
            )


def format_count(value: int) -> str:
    return f"{value / 1e6:.2f} M" if value >= 1e6 else f"{value:,}"


def render(sections: Sequence[tuple[str, Sequence[str]]]) -> str:
    """Markdown from (heading, lines) pairs."""
    out = []
    for heading, lines in sections:
        out.append(f"## {heading}")
        out.extend(lines)
        out.append("")
    return "\n".join(out)


def write_json(path: Path, data: object) -> None:
    write_text_atomically(path, json.dumps(data, indent=1) + "\n")


def per_class_lines(metrics: dict[str, Any], limit: int = 30) -> list[str]:
    """A markdown table of per-class precision, recall and F1 (omitted above ``limit`` classes)."""
    per_class = metrics["per_class"]
    if len(per_class) > limit:
        return [f"- per-class scores for the {len(per_class)} classes: see metrics.json"]
    lines = ["", "| class | precision | recall | F1 | images |", "|---|---|---|---|---|"]
    for name, scores in per_class.items():
        numbers = " | ".join(f"{scores[key]:.3f}" for key in ("precision", "recall", "f1"))
        lines.append(f"| {name} | {numbers} | {scores['support']} |")
    return lines


def fit_report(
    context: RunContext, outcome: TrainingOutcome, metrics: dict[str, Any], bundle: Bundle | None, seconds: float
) -> str:
    """``report.md`` of a fit (also printed at the end): the data, the network, the training and its results."""
    return render(
        [
            ("Data", _data_lines(context)),
            ("Network", _network_lines(context, outcome)),
            ("Training", _training_lines(context, outcome, seconds, metrics["val"]["accuracy"])),
            ("Results", _result_lines(metrics)),
            ("Files", _file_lines(context, bundle)),
            ("Trust", trust_lines(context, bundle)),
        ]
    )


def _data_lines(context: RunContext) -> list[str]:
    data, config = context.data, context.config
    counts = data.counts(data.train)
    per_class = zip(data.classes, counts, data.counts(data.val), strict=True)
    warning = imbalance_warning(data.classes, counts)
    balance = (
        "inverse-frequency class weights in the training loss (--class-weights auto)"
        if config.class_weights == "auto"
        else "balanced sampling: every class drawn equally often (--balanced-sampling)"
        if config.balanced_sampling
        else None
    )
    return [
        f"- training: {len(data.train)} images, validation: {len(data.val)} ({data.val_source}), "
        f"{len(data.classes)} classes",
        "- per class (train/val): " + ", ".join(f"{name} {t}/{v}" for name, t, v in per_class),
        *([f"- **warning**: {warning}"] if warning else []),
        *[f"- **warning**: {note}" for note in data.warnings],
        *([f"- class balance: {balance}"] if balance else []),
        f"- unreadable files skipped: {len(data.skipped)}",
        *[f"  - {path}: {why}" for path, why in data.skipped[:20]],
        f"- fingerprint: {data.fingerprint}",
    ]


def _network_lines(context: RunContext, outcome: TrainingOutcome) -> list[str]:
    config, prep, built = context.config, context.prep, context.built
    mode_auto, lr_finder = context.choices.get("mode_auto"), context.choices.get("lr_finder")
    return [
        f"- backbone: {config.backbone} ({built.architecture.family}/{built.architecture.name}), "
        f"starting from {built.base_weights or 'random initialisation'}",
        f"- input: {prep.crop_size} px (resize {prep.resize_size}, {prep.interpolation}), "
        f"mean {prep.mean}, std {prep.std}",
        f"- {_transfer_words(context)}{' (chosen by --mode auto)' if mode_auto else ''}; optimiser "
        f"{config.optimizer}, lr {config.base_lr:.3g}{' (chosen by --lr auto)' if lr_finder else ''}, "
        f"schedule {config.schedule}",
        *([f"- --mode auto: {mode_auto['reason']}"] if mode_auto else []),
        *([f"- --lr auto: {lr_finder_sentence(lr_finder)}"] if lr_finder else []),
        *[
            f"- phase {name}: {format_count(t)} of {format_count(n)} parameters train ({t / n:.1%})"
            for name, (t, n) in outcome.parameters.items()
        ],
    ]


def how_trained(context: RunContext) -> str:
    """``fine-tuned`` from pretrained weights, ``trained from scratch`` without (nothing was fine-tuned then)."""
    if context.built.base_weights is None:
        return "trained from scratch"
    return "with a new classifier trained" if context.config.mode == "feature-extractor" else "fine-tuned"


def _transfer_words(context: RunContext) -> str:
    if context.built.base_weights is None:
        return "trained from scratch (no pretrained weights: every layer starts from random initialisation)"
    return f"transfer mode: {context.config.mode}"


def lr_finder_sentence(found: dict[str, Any]) -> str:
    """The range test's result in words (``lr_finder.RangeTest.summary()``)."""
    low, high = found["lr_range"]
    cached = " on cached features" if found["cached_features"] else ""
    return (
        f"the learning-rate range test on the {found['phase']} phase{cached} ({found['steps']} steps, lr from "
        f"{low:.0e} up to {high:.2g}; stopped: {found['stop']}) found the smoothed loss lowest at "
        f"{found['min_loss_lr']:.3g} and suggested a tenth of that, {found['suggestion']:.3g}; plot: {found['plot']}"
    )


def _augmentation_line(context: RunContext) -> str:
    config = context.config
    alphas = (("MixUp", config.mixup), ("CutMix", config.cutmix))
    mixing = [f"{name} (alpha {value:g})" for name, value in alphas if value]
    flips = ""
    if config.augment != "none":
        flips = ", horizontal flips" if config.hflip else ", no horizontal flips"
        if not config.hflip and looks_like_text(context.data.classes):
            flips += " (the class names look like digits or text; --hflip flips them anyway)"
    return f"- augmentation: {config.augment}{flips}" + (f"; per batch: {' or '.join(mixing)}" if mixing else "")


def _training_lines(context: RunContext, outcome: TrainingOutcome, seconds: float, val_accuracy: float) -> list[str]:
    lines = [
        f"- {outcome.epochs} epochs in {seconds / 60:.1f} min; best epoch {outcome.best_epoch} "
        f"by {context.config.monitor} (its weights are the ones exported)",
        _augmentation_line(context),
    ]
    if outcome.feature_cache:
        lines.append(f"- feature cache: {outcome.feature_cache}")
    if outcome.images_per_second is not None:
        lines.append(f"- training throughput: {outcome.images_per_second:.0f} images/s per process")
    note = overfitting_note(outcome.history) or generalisation_gap_note(outcome.history, val_accuracy)
    lines.append(f"- **warning**: {note}" if note else "- no sign of overfitting in the validation loss")
    mode_auto = context.choices.get("mode_auto") or {}
    weak = underfitting_note(
        outcome.history, val_accuracy, mode_auto.get("probe_accuracy_pretrained"), len(context.data.classes)
    )
    lines.append(f"- **warning**: {weak}" if weak else "- no sign of underfitting")
    return lines


def _result_lines(metrics: dict[str, Any]) -> list[str]:
    lines = [f"- validation: {summary_line(metrics['val'])}"]
    if "test" in metrics:
        lines.append(f"- test: {summary_line(metrics['test'])}")
    return lines + per_class_lines(metrics["val"])


def _file_lines(context: RunContext, bundle: Bundle | None) -> list[str]:
    return [
        f"- run folder: {context.run_dir} (history.csv/json, curves.png, confusion_*.png, metrics.json, checkpoint/)",
        f"- bundle: {bundle.path}" if bundle else "- bundle: not exported (--no-export)",
        *([f"- int8: {outcome_line(bundle.spec.quantization)}"] if bundle else []),
    ]

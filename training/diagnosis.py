"""What the curves and the data say about a run, in sentences for its report: overfitting, underfitting, a gap
between training and validation accuracy, unbalanced classes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from training.data.samplers import IMBALANCE_WARNING_RATIO, imbalance_ratio


def overfitting_note(history: Sequence[dict[str, Any]], tolerance: float = 0.02) -> str | None:
    """A sentence when validation loss ended above its best while training loss kept falling, else None."""
    if len(history) < 3:
        return None
    best = min(range(len(history)), key=lambda i: history[i]["val_loss"])
    last = history[-1]
    if best == len(history) - 1:
        return None
    val_rose = last["val_loss"] > history[best]["val_loss"] * (1 + tolerance)
    train_fell = last["train_loss"] < history[best]["train_loss"]
    if not (val_rose and train_fell):
        return None
    return (
        f"Validation loss rose from {history[best]['val_loss']:.3f} (epoch {history[best]['epoch']}) to "
        f"{last['val_loss']:.3f} (epoch {last['epoch']}) while training loss kept falling "
        f"({history[best]['train_loss']:.3f} -> {last['train_loss']:.3f}): the network is overfitting, learning "
        "its training images rather than the classes. More data or augmentation, dropout, weight decay or fewer "
        "epochs (early stopping: --patience) would help."
    )


UNDERFIT_GAP = 0.15
"""Validation accuracy this far (absolute) below the probe's or the training accuracy: the report says so."""
STILL_LEARNING = 0.2
"""Validation loss still falling by this share in the last epoch, with validation accuracy under
``STILL_LEARNING_BELOW``: training stopped too early (a model that is right already is left alone)."""
STILL_LEARNING_BELOW = 0.9


def underfitting_note(
    history: Sequence[dict[str, Any]], val_accuracy: float, probe_accuracy: float | None, num_classes: int
) -> str | None:
    """A sentence when the exported model is far weaker than the data allows: validation accuracy far below what a
    linear probe of the frozen pretrained features reached (``--mode auto`` ran one), or the validation loss still
    falling steeply when training ended; else None."""
    reasons: list[str] = []
    if probe_accuracy is not None and val_accuracy < probe_accuracy - UNDERFIT_GAP:
        reasons.append(
            f"a linear probe of the frozen pretrained features reached {probe_accuracy:.1%} on the same images"
        )
    falling = len(history) >= 2 and history[-1]["val_loss"] < history[-2]["val_loss"] * (1 - STILL_LEARNING)
    if falling and val_accuracy < STILL_LEARNING_BELOW:
        reasons.append(
            f"the validation loss was still falling steeply in the last epoch ({history[-2]['val_loss']:.3f} -> "
            f"{history[-1]['val_loss']:.3f})"
        )
    if not reasons:
        return None
    return (
        f"Underfit: validation accuracy is only {val_accuracy:.1%} (chance: {1 / max(num_classes, 1):.1%}) while "
        f"{'; and '.join(reasons)}. The model is weaker than these images allow: train longer (--epochs), let "
        "--lr auto choose the learning rate, or use --mode feature-extractor when the probe did well."
    )


def generalisation_gap_note(history: Sequence[dict[str, Any]], val_accuracy: float) -> str | None:
    """A sentence when validation accuracy is far below the training accuracy (even with no rise of the validation
    loss for ``overfitting_note`` to see, e.g. in a short run), else None."""
    if not history:
        return None
    best = max(history, key=lambda row: row["train_accuracy"])
    if val_accuracy >= best["train_accuracy"] - UNDERFIT_GAP:
        return None
    return (
        f"Validation accuracy ({val_accuracy:.1%}) is far below the training accuracy ({best['train_accuracy']:.1%}, "
        f"epoch {best['epoch']}): the network learnt its training images better than the classes. More data or "
        "augmentation, dropout or weight decay would help."
    )


def imbalance_warning(classes: Sequence[str], counts: Sequence[int]) -> str | None:
    """A sentence when the largest class has more than ``IMBALANCE_WARNING_RATIO`` times the images of the smallest."""
    ratio = imbalance_ratio(counts)
    if ratio <= IMBALANCE_WARNING_RATIO:
        return None
    largest = max(range(len(counts)), key=counts.__getitem__)
    smallest = min((i for i in range(len(counts)) if counts[i]), key=counts.__getitem__)
    return (
        f"Unbalanced classes: {classes[largest]} has {counts[largest]} training images, {classes[smallest]} only "
        f"{counts[smallest]} ({ratio:.1f}x, over {IMBALANCE_WARNING_RATIO:g}x). Accuracy then favours the large "
        "classes; watch macro-F1 and the per-class recall, and consider --class-weights auto or --balanced-sampling."
    )

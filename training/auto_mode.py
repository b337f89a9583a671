"""``--mode auto``: the lecture's question "when should I use a pretrained network?" answered from the data.

Two measurements place the data in the quadrant of small or large data, similar or dissimilar to what the backbone
learned (CS231n's transfer-learning notes):

- **size**: training images per class (the median class);
- **similarity**: a linear probe (logistic regression on standardised embeddings) trained on the frozen backbone's
  features of the training images and scored on the validation images, once with the pretrained weights and once
  with the same network randomly initialised. The data counts as close to what the backbone knows when the
  pretrained features separate the classes almost perfectly (probe accuracy at least 95 % of the way from chance to
  100 %), or when they make at most half the random features' errors: pretraining, not the architecture, is what
  separates the classes.

The quadrant then picks the mode:

=============== ============================== =========================================================
                similar                        dissimilar
=============== ============================== =========================================================
small           ``feature-extractor``          ``two-phase`` (head first, then all layers at lr/10)
large           ``two-phase``                  ``fine-tune``
=============== ============================== =========================================================

The pretrained probe runs on the cached features of item 1 (``training.engine.features``) when the data is small, so a
feature-extractor run that follows reuses them; on large data both probes use a subsample.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from training import backbones
from training.config import TransferMode, revalidated
from training.data.datasets import eval_dataset
from training.data.folders import Sample
from training.engine import distributed
from training.engine.features import embed, load_or_compute, training_images
from training.engine.run import RunContext

logger = logging.getLogger(__name__)

SMALL_DATA_PER_CLASS = 200  # fewer training images per class than this (median class) is "small"
NEAR_PERFECT_SKILL = 0.95  # probe accuracy this far from chance to 100 %: the pretrained features suffice
ERROR_RATIO_SIMILAR = 0.5  # pretrained probe errors at most this share of the random-init probe's: "similar"
PROBE_TRAIN_PER_CLASS = 100  # probe subsample on large data
PROBE_VAL_PER_CLASS = 50
PROBE_C = 0.1  # inverse L2 strength of the probe (strong: a few hundred images, a thousand dimensions)

QUADRANT: dict[tuple[bool, bool], tuple[TransferMode, str]] = {
    (True, True): ("feature-extractor", "few images that the pretrained features already separate: train only the "
                   "classifier, which cannot overfit the backbone and takes seconds on cached features"),
    (True, False): ("two-phase", "few images unlike what the backbone learned: its features need adapting, but with "
                    "little data and a random head they are easily wrecked, so the head trains first and then every "
                    "layer at a tenth of the learning rate"),
    (False, True): ("two-phase", "enough images to adapt the backbone, whose features already fit: train the head "
                    "first, then fine-tune every layer gently (a tenth of the learning rate)"),
    (False, False): ("fine-tune", "enough images, unlike what the backbone learned: fine-tune every layer"),
}  # fmt: skip


@dataclass(frozen=True)
class ModeChoice:
    """The chosen mode, the measurements behind it and the reason in words."""

    mode: TransferMode
    reason: str
    images_per_class: float
    small: bool
    similar: bool | None  # None: no pretrained weights to measure
    probe_pretrained: float | None = None
    probe_random: float | None = None
    chance: float | None = None
    probe_images: tuple[int, int] = (0, 0)  # (train, val)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "reason": self.reason,
            "images_per_class": self.images_per_class,
            "small_data": self.small,
            "similar": self.similar,
            "probe_accuracy_pretrained": self.probe_pretrained,
            "probe_accuracy_random_init": self.probe_random,
            "chance": self.chance,
            "probe_images": list(self.probe_images),
            "seconds": round(self.seconds, 2),
        }


def decide(
    images_per_class: float, pretrained: float, random_init: float, chance: float
) -> tuple[TransferMode, bool, bool, str]:
    """The quadrant from the measurements: (mode, small, similar, reason with the numbers)."""
    small = images_per_class < SMALL_DATA_PER_CLASS
    skill = (pretrained - chance) / (1 - chance)
    error_pre, error_random = 1 - pretrained, 1 - random_init
    ratio = error_pre / error_random if error_random > 0 else (0.0 if error_pre == 0 else float("inf"))
    similar = skill >= NEAR_PERFECT_SKILL or ratio <= ERROR_RATIO_SIMILAR
    mode, why = QUADRANT[(small, similar)]
    size = f"{images_per_class:g} training images per class ({'small: <' if small else 'large: >='} "
    size += f"{SMALL_DATA_PER_CLASS})"
    probe = (
        f"a linear probe on the frozen pretrained features scored {pretrained:.1%} on the validation images "
        f"(random-init features {random_init:.1%}, chance {chance:.1%})"
    )
    if similar and skill >= NEAR_PERFECT_SKILL:
        closeness = "the pretrained features separate the classes almost perfectly (similar)"
    elif similar:
        closeness = (
            f"pretraining cuts the errors to {ratio:.0%} of the random-init features' (at most "
            f"{ERROR_RATIO_SIMILAR:.0%}: similar)"
        )
    else:
        closeness = (
            f"pretraining leaves {ratio:.0%} of the random-init features' errors (more than "
            f"{ERROR_RATIO_SIMILAR:.0%}: dissimilar; the pretrained features alone do not tell the classes apart)"
        )
    return mode, small, similar, f"{size}; {probe}: {closeness}. So: {why}."


def decide_mode(context: RunContext) -> RunContext:
    """``--mode auto``: the run with the mode chosen from the data, the choice recorded in its ``choices``."""
    if context.config.mode != "auto":
        return context
    choice = choose_mode(context)
    return dataclasses.replace(
        context,
        config=revalidated(context.config, mode=choice.mode),
        choices={**context.choices, "mode_auto": choice.summary()},
    )


def choose_mode(context: RunContext) -> ModeChoice:
    """Measure and decide; the same decision on every process (rank 0's)."""
    start = time.perf_counter()
    data = context.data
    per_class = float(statistics.median(data.counts(data.train)))
    if context.built.base_weights is None:
        mode: TransferMode = "fine-tune"
        reason = (
            f"{per_class:g} training images per class; the backbone starts from random weights (no pretrained "
            "weights), so there is nothing to transfer: every layer trains"
        )
        choice = ModeChoice(mode, reason, per_class, per_class < SMALL_DATA_PER_CLASS, None)
    else:
        choice = _probe_and_decide(context, per_class, start)
    choice = ModeChoice(**vars(distributed.broadcast(choice, context.dist)))
    logger.info("--mode auto chose %s: %s", choice.mode, choice.reason)
    return choice


def _probe_and_decide(context: RunContext, per_class: float, start: float) -> ModeChoice:
    data, config = context.data, context.config
    small = per_class < SMALL_DATA_PER_CLASS
    train, val = data.train, data.val
    if small:  # all images, through the cache the head phase will reuse
        features = load_or_compute(context)
        pretrained_train, train_labels = features.train.numpy(), features.train_labels.numpy()
        pretrained_val, val_labels = features.val.numpy(), features.val_labels.numpy()
    else:
        train = _subsample(train, PROBE_TRAIN_PER_CLASS, config.seed)
        val = _subsample(val, PROBE_VAL_PER_CLASS, config.seed)
        pretrained_train, train_labels = _embed(context.network.backbone, context, train, training=True)
        pretrained_val, val_labels = _embed(context.network.backbone, context, val, training=False)
    random_backbone = _random_init_backbone(context)
    random_train, _ = _embed(random_backbone, context, train, training=True)
    random_val, _ = _embed(random_backbone, context, val, training=False)
    pretrained = probe_accuracy(pretrained_train, train_labels, pretrained_val, val_labels)
    random_init = probe_accuracy(random_train, train_labels, random_val, val_labels)
    chance = 1 / len(data.classes)
    mode, small, similar, reason = decide(per_class, pretrained, random_init, chance)
    return ModeChoice(mode, reason, per_class, small, similar, pretrained, random_init, chance,
                      (len(train), len(val)), time.perf_counter() - start)  # fmt: skip


def probe_accuracy(train: np.ndarray, train_labels: np.ndarray, val: np.ndarray, val_labels: np.ndarray) -> float:
    """Validation accuracy of an L2-regularised logistic regression on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train)
    probe = LogisticRegression(C=PROBE_C, max_iter=2000).fit(scaler.transform(train), train_labels)
    return float(probe.score(scaler.transform(val), val_labels))


def _embed(
    backbone: torch.nn.Module, context: RunContext, samples: list[Sample], *, training: bool
) -> tuple[np.ndarray, np.ndarray]:
    dataset = training_images(samples, context) if training else eval_dataset(samples, context.prep)
    batch = max(context.config.batch_size, 64)
    features, labels = embed(backbone, dataset, batch_size=batch, workers=context.workers, step=context.step)
    return features.numpy(), labels.numpy()


def _random_init_backbone(context: RunContext) -> torch.nn.Module:
    """The same architecture from random weights, built without disturbing the run's random number streams."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(context.config.seed)
        built = backbones.build(context.backbone, None, dropout=0.0, batch_norm=context.config.batch_norm)
    module = built.module.to(context.device)
    return module.to(memory_format=context.step.memory_format)


def _subsample(samples: list[Sample], per_class: int, seed: int) -> list[Sample]:
    """At most ``per_class`` samples of each class, chosen with a seeded shuffle, in their original order."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for index, (_, label) in enumerate(samples):
        by_class.setdefault(label, []).append(index)
    keep = sorted(i for indices in by_class.values() for i in rng.permutation(indices)[:per_class].tolist())
    return [samples[i] for i in keep]

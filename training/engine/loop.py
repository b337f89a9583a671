"""The training loop: one epoch of training, one pass of evaluation, and early stopping.

These functions know nothing about phases, files or processes; ``training.engine.trainer`` strings them together.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader
from tqdm import tqdm

from training.data.transforms import BatchMix
from training.engine.distributed import DistInfo, Precision, all_reduce_sum
from training.engine.optim import l1_penalty
from training.metrics import macro_f1

logger = logging.getLogger(__name__)

Batches = DataLoader[tuple[torch.Tensor, int]]


@dataclass(frozen=True)
class Step:
    """What one step needs besides the model and the data."""

    device: torch.device
    precision: Precision
    memory_format: torch.memory_format = torch.contiguous_format
    dist: DistInfo = DistInfo()
    progress: bool = True


@dataclass(frozen=True)
class EpochStats:
    loss: float
    accuracy: float
    samples: int
    seconds: float
    macro_f1: float = 0.0  # F1 averaged over the classes present, each class counting the same

    @property
    def images_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


def _to_device(images: torch.Tensor, labels: torch.Tensor, step: Step) -> tuple[torch.Tensor, torch.Tensor]:
    images = images.to(step.device, non_blocking=True, memory_format=step.memory_format)
    return images, labels.to(step.device, non_blocking=True)


def train_one_epoch(
    model: nn.Module,
    loader: Batches,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    criterion: nn.Module,
    step: Step,
    *,
    l1: float = 0.0,
    clip_grad_norm: float | None = None,
    mix: BatchMix | None = None,
    num_classes: int | None = None,
    description: str = "train",
) -> EpochStats:
    """One pass over ``loader``: (mix,) forward, loss (+ L1 penalty), backward, (clipping,) step, schedule step.

    The caller puts the model in training mode (``transfer.set_train_mode``), which depends on what is frozen.
    Loss and accuracy are those of the batches as trained (augmented, mixed, with dropout), summed over all
    processes; with ``mix`` the loss is against the soft targets and accuracy against the images' own labels.
    """
    # L1, like weight decay, applies to weight matrices and kernels, not to biases and normalisation parameters.
    penalised = [p for group in optimizer.param_groups for p in group["params"] if p.ndim > 1] if l1 else []
    totals = Totals(step.device, num_classes)
    start = time.perf_counter()
    bar = tqdm(loader, desc=description, leave=False, disable=not step.progress, dynamic_ncols=True)
    for index, (images, labels) in enumerate(bar):
        images, labels = _to_device(images, labels, step)
        targets = labels
        if mix is not None:
            images, targets = mix(images, labels)
        with step.precision.autocast():
            logits, _ = model(images)
            loss = criterion(logits, targets)
        objective = loss + l1 * l1_penalty(penalised) if penalised else loss
        optimizer.zero_grad(set_to_none=True)
        step.precision.backward_and_step(objective, optimizer, clip_grad_norm)
        scheduler.step()
        totals.add(loss.detach(), logits.detach(), labels)
        if step.progress and index % 10 == 0:
            bar.set_postfix(loss=f"{totals.mean_loss():.3f}", refresh=False)
    stats = totals.stats(step.dist, time.perf_counter() - start)
    if not math.isfinite(stats.loss):
        raise FloatingPointError("the training loss is not finite; lower the learning rate or clip gradients")
    return stats


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Batches,
    criterion: nn.Module,
    step: Step,
    *,
    num_classes: int | None = None,
    description: str = "val",
) -> EpochStats:
    """Loss, accuracy and macro-F1 over ``loader`` in eval mode (this process's share; summed over all processes)."""
    model.eval()
    totals = Totals(step.device, num_classes)
    start = time.perf_counter()
    for images, labels in tqdm(loader, desc=description, leave=False, disable=not step.progress, dynamic_ncols=True):
        images, labels = _to_device(images, labels, step)
        with step.precision.autocast():
            logits, _ = model(images)
        totals.add(criterion(logits.float(), labels), logits, labels)
    return totals.stats(step.dist, time.perf_counter() - start)


class Totals:
    """Running sums of an epoch on the device (loss, samples, confusion counts), reduced over processes at the end
    so that no step waits for a device-to-host copy. ``num_classes`` (else taken from the first logits) keeps
    the sums the same size on every process, even one whose share of the data is empty."""

    def __init__(self, device: torch.device, num_classes: int | None = None) -> None:
        self.device = device
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, samples
        self.confusion: torch.Tensor | None = None  # true classes x predicted classes, flattened
        if num_classes is not None:
            self.confusion = torch.zeros(num_classes * num_classes, dtype=torch.float64, device=device)

    def add(self, mean_loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        classes = logits.shape[1]
        if self.confusion is None:
            self.confusion = torch.zeros(classes * classes, dtype=torch.float64, device=self.device)
        with torch.no_grad():
            self.sums += torch.stack([mean_loss.double() * len(labels), self.sums.new_tensor(len(labels))])
            cells = labels * classes + logits.argmax(dim=1)
            self.confusion += torch.bincount(cells, minlength=classes * classes).double()

    def mean_loss(self) -> float:
        loss_sum, samples = self.sums.tolist()
        return float(loss_sum / max(samples, 1.0))

    def stats(self, dist: DistInfo, seconds: float) -> EpochStats:
        confusion = self.confusion if self.confusion is not None else self.sums.new_zeros(1)
        reduced = all_reduce_sum(torch.cat([self.sums, confusion]), dist).cpu().numpy()
        loss_sum, samples = float(reduced[0]), max(float(reduced[1]), 1.0)
        classes = math.isqrt(len(reduced) - 2)
        matrix = reduced[2:].reshape(classes, classes).astype(np.int64)
        return EpochStats(
            loss=loss_sum / samples,
            accuracy=float(np.trace(matrix)) / samples,
            samples=int(samples),
            seconds=seconds,
            macro_f1=macro_f1(matrix),
        )


@dataclass(frozen=True)
class Predictions:
    """A network's outputs on every sample of a split, in the split's order."""

    logits: np.ndarray  # (samples, classes), float32
    embeddings: np.ndarray  # (samples, embedding size), float32
    labels: np.ndarray  # (samples,), int64


@torch.no_grad()
def predict(network: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], step: Step) -> Predictions:
    """Logits and embeddings (float32) and labels of every sample, in order, for the detailed metrics and the
    statistics the export computes from them. ``network`` is called as ``network(batch) -> (logits, embedding)``."""
    network.eval()
    all_logits, all_embeddings, all_labels = [], [], []
    for images, labels in batches:
        logits, embedding = network(images.to(step.device, memory_format=step.memory_format))
        all_logits.append(logits.float().cpu().numpy())
        all_embeddings.append(embedding.float().cpu().numpy())
        all_labels.append(labels.numpy())
    return Predictions(np.concatenate(all_logits), np.concatenate(all_embeddings), np.concatenate(all_labels))


class EarlyStopping:
    """Tracks the best epoch by the monitored value; says when ``patience`` epochs brought no improvement."""

    def __init__(self, monitor: str = "val_loss", patience: int | None = None, min_delta: float = 0.0) -> None:
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.best: float | None = None
        self.best_epoch = 0
        self.bad_epochs = 0

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.monitor == "val_accuracy":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, value: float, epoch: int) -> bool:
        """Record an epoch's value; True when it is the best so far."""
        if self._better(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience

    def new_phase(self) -> None:
        """Patience restarts with each transfer phase; the best epoch so far is kept."""
        self.bad_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]

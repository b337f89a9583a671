"""Optimisers, parameter groups and learning-rate schedules.

Schedules are per step (one optimiser update) and written as a multiplier of each group's base rate, so a
discriminative (layer-wise) learning rate and a schedule compose. The linear decay is the one of Goodfellow et al.,
*Deep Learning*, section 8.3.1: with ``a = k / tau``, ``lr_k = (1 - a) lr_0 + a lr_tau`` for ``k <= tau`` and
``lr_tau`` after; ``lr_tau`` defaults to 1 % of ``lr_0``, as the book suggests. Warmup, when asked for, rises
linearly to ``lr_0`` first, and the schedule's ``k`` counts from the end of the warmup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from modelspec.network import ClassifierNet
from training.config import FitConfig, OptimizerName, ScheduleName
from training.engine.transfer import Phase, Stage, trainable_stages

DEFAULT_END_RATIO = 0.01


def parameter_groups(
    network: ClassifierNet,
    stages: list[Stage],
    phase: Phase,
    *,
    lr: float,
    weight_decay: float,
    layer_decay: float | None = None,
) -> list[dict[str, Any]]:
    """The optimiser's groups: the classifier, then each trainable stage from the top down.

    A stage ``d`` levels below the classifier learns at ``lr * layer_decay**d`` (discriminative fine-tuning: the
    early, generic layers move least). Weight decay applies to weight matrices and kernels only; biases and
    normalisation parameters are not decayed, as in timm and the torchvision references.
    """
    units: list[tuple[str, list[nn.Parameter]]] = [("classifier", list(network.classifier.parameters()))]
    units += [(stage.name, [p for _, p in stage.parameters]) for stage in reversed(trainable_stages(stages, phase))]
    groups = []
    for depth, (name, parameters) in enumerate(units):
        scale = phase.lr_scale * (layer_decay**depth if layer_decay else 1.0)
        decayed = [p for p in parameters if p.requires_grad and p.ndim > 1]
        others = [p for p in parameters if p.requires_grad and p.ndim <= 1]
        for params, decay, label in ((decayed, weight_decay, name), (others, 0.0, f"{name} (no decay)")):
            if params:
                groups.append({"params": params, "lr": lr * scale, "weight_decay": decay, "name": label})
    return groups


def build_optimizer(
    name: OptimizerName,
    groups: list[dict[str, Any]],
    *,
    lr: float,
    momentum: float | None = None,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """SGD (momentum 0.9 unless given, optionally Nesterov), RMSprop (momentum 0 unless given), Adam or AdamW.

    Weight decay is L2 regularisation added to the gradient for SGD, RMSprop and Adam, and decoupled for AdamW.
    """
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9 if momentum is None else momentum, nesterov=nesterov)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, momentum=momentum or 0.0)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}")


def l1_penalty(parameters: list[nn.Parameter]) -> torch.Tensor:
    """Sum of absolute values (the L1 norm) of the parameters that train and decay."""
    return torch.stack([p.abs().sum() for p in parameters]).sum()


@dataclass(frozen=True)
class Schedule:
    """The learning-rate multiplier at each step of a phase."""

    kind: ScheduleName
    warmup_steps: int = 0
    decay_steps: int = 1
    end_ratio: float = DEFAULT_END_RATIO
    step_size: int = 1
    gamma: float = 0.1

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        k = step - self.warmup_steps
        if self.kind == "constant":
            return 1.0
        if self.kind == "step":
            return float(self.gamma ** (k // self.step_size))
        a = min(k / self.decay_steps, 1.0)
        if self.kind == "linear":
            return (1.0 - a) + a * self.end_ratio
        return self.end_ratio + (1.0 - self.end_ratio) * 0.5 * (1.0 + math.cos(math.pi * a))

    def lr(self, lr0: float, step: int) -> float:
        return lr0 * self.factor(step)


def make_schedule(config: FitConfig, *, steps_per_epoch: int, epochs: int) -> Schedule:
    """The schedule of a phase of ``epochs`` epochs; tau defaults to the end of the phase."""
    warmup = round(config.warmup_epochs * steps_per_epoch)
    total = max(1, epochs * steps_per_epoch - warmup)
    decay = round(config.decay_epochs * steps_per_epoch) if config.decay_epochs else total
    return Schedule(
        kind=config.schedule,
        warmup_steps=warmup,
        decay_steps=max(1, decay),
        end_ratio=(config.lr_end / config.base_lr) if config.lr_end is not None else DEFAULT_END_RATIO,
        step_size=max(1, round(config.step_epochs * steps_per_epoch)),
        gamma=config.gamma,
    )


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: Schedule) -> LambdaLR:
    """A ``LambdaLR`` stepping ``schedule``; step it after every optimiser step."""

    def factor(step: int) -> float:  # a plain function, so the scheduler's state_dict stays plain data
        return schedule.factor(step)

    return LambdaLR(optimizer, factor)

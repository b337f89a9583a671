"""The learning-rate range test (Smith, "Cyclical Learning Rates for Training Neural Networks", 2015; the fastai
``lr_find``): train the first phase of the run for a few hundred steps while the learning rate grows exponentially
from ``start_lr`` to ``end_lr``, record the loss (smoothed with an exponential moving average, bias-corrected), stop
once it diverges (four times its lowest value, or not finite), put the weights back, and suggest a tenth of the rate
at which the smoothed loss was lowest: an order of magnitude below the edge, where the loss still falls fast
(fastai's ``minimum`` suggestion). The moving average spans about ten steps (``smoothing`` 0.9): with 25 steps per
decade of rates a longer one (fastai's 0.98) lags the raw loss by most of a decade.

It trains what the run's first phase trains, on what it trains on: the whole network on augmented images, or the
head alone on cached features when the backbone is frozen; with the run's optimiser, weight decay, layer decay,
class weights and mixing. The network, the random number generators and which parameters train are restored
afterwards, so the fit that follows starts exactly as it would have without the test.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from modelspec.files import write_atomically
from training import report
from training.config import revalidated
from training.engine import checkpoint, distributed
from training.engine.inputs import PhaseInputs
from training.engine.run import RunContext
from training.engine.trainer import Trainer
from training.engine.transfer import apply_phase, plan_phases, set_train_mode

logger = logging.getLogger(__name__)

PLOT_FILE = "lr_find.png"  # in the run folder
RESULT_FILE = "lr_find.json"


@dataclass(frozen=True)
class RangeTest:
    """What the range test measured and what it suggests."""

    suggestion: float  # min_loss_lr / 10
    min_loss_lr: float  # where the smoothed loss was lowest (training there is on the edge of diverging)
    lrs: list[float]
    losses: list[float]  # smoothed
    raw_losses: list[float]
    steps: int
    stop: str  # why it stopped
    phase: str
    cached: bool
    seconds: float

    def summary(self) -> dict[str, Any]:
        """The JSON-ready facts for the report, the checkpoint and the bundle's hyperparameters."""
        return {
            "suggestion": self.suggestion,
            "min_loss_lr": self.min_loss_lr,
            "lr_range": [self.lrs[0], self.lrs[-1]],
            "steps": self.steps,
            "stop": self.stop,
            "phase": self.phase,
            "cached_features": self.cached,
            "seconds": round(self.seconds, 2),
            "plot": PLOT_FILE,
        }


def range_test(
    trainer: Trainer,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 200,
    smoothing: float = 0.9,
    diverge: float = 4.0,
) -> RangeTest:
    """Run the range test on ``trainer``'s first phase and restore everything it touched."""
    if not 0 < start_lr < end_lr:
        raise ValueError(f"the range test needs 0 < start_lr < end_lr, not {start_lr:g} and {end_lr:g}")
    context = trainer.context
    network = context.network
    phase = plan_phases(context.config)[0]
    saved_weights = copy.deepcopy(network.state_dict())
    saved_rng = checkpoint.rng_state()
    saved_training = network.training
    started = time.perf_counter()
    try:
        apply_phase(network, trainer.stages, phase)
        inputs = trainer.phase_inputs(phase)
        lrs, raw, smoothed, stop = _sweep(trainer, inputs, start_lr, end_lr, max(steps, 10), smoothing, diverge)
    finally:
        network.load_state_dict(saved_weights)
        checkpoint.set_rng_state(saved_rng)
        network.train(saved_training)
        for parameter in network.parameters():
            parameter.requires_grad_(True)
            parameter.grad = None
    lowest = lrs[min(range(len(smoothed)), key=smoothed.__getitem__)]
    return RangeTest(lowest / 10, lowest, lrs, smoothed, raw, len(lrs), stop, phase.name, inputs.cached,
                     time.perf_counter() - started)  # fmt: skip


def _batches(inputs: PhaseInputs) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The phase's training batches, pass after pass (each pass its own seeded shuffle)."""
    sampler: Any = inputs.train_loader.sampler
    for epoch in range(1, 1_000_000):
        sampler.set_epoch(epoch)
        yield from inputs.train_loader


def _sweep(
    trainer: Trainer, inputs: PhaseInputs, start_lr: float, end_lr: float, steps: int, smoothing: float,
    diverge: float,
) -> tuple[list[float], list[float], list[float], str]:  # fmt: skip
    """Train ``steps`` steps at exponentially growing rates; (rates, raw losses, smoothed losses, why it stopped)."""
    config = trainer.context.config
    phase = plan_phases(config)[0]
    optimizer = trainer.build_optimizer(phase, 1.0)  # each group's lr is then its scale (phase, layer decay)
    scales = [group["lr"] for group in optimizer.param_groups]
    growth = (end_lr / start_lr) ** (1 / (steps - 1))
    step, module = inputs.step, inputs.module
    if inputs.cached:
        module.train()
    else:
        set_train_mode(module, trainer.context.network)
    lrs: list[float] = []
    raw: list[float] = []
    smoothed: list[float] = []
    average, best = 0.0, math.inf
    for index, (images, labels) in enumerate(_batches(inputs)):
        if index == steps:
            return lrs, raw, smoothed, f"reached {end_lr:g}"
        lr = start_lr * growth**index
        for group, scale in zip(optimizer.param_groups, scales, strict=True):
            group["lr"] = lr * scale
        images = images.to(step.device, memory_format=step.memory_format)
        labels = labels.to(step.device)
        targets = labels
        if trainer.mix is not None:
            images, targets = trainer.mix(images, labels)
        with step.precision.autocast():
            logits, _ = module(images)
            loss = trainer.criterion(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        step.precision.backward_and_step(loss, optimizer, config.clip_grad_norm)
        value = float(loss.detach())
        if not math.isfinite(value):
            return lrs, raw, smoothed, f"the loss became {value} at lr {lr:.2g}"
        average = smoothing * average + (1 - smoothing) * value
        current = average / (1 - smoothing ** (index + 1))
        lrs.append(lr)
        raw.append(value)
        smoothed.append(current)
        best = min(best, current)
        if index >= 10 and current > diverge * best:
            return lrs, raw, smoothed, f"the loss diverged at lr {lr:.2g} ({current:.3g} > {diverge:g} x {best:.3g})"
    raise AssertionError("unreachable: the batches never end")


def write(result: RangeTest, run_dir: Path) -> Path:
    """``lr_find.png`` (the smoothed loss against the learning rate, the suggestion marked) and ``lr_find.json``."""
    from matplotlib.figure import Figure

    run_dir.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(7, 4.2), layout="constrained")
    axes = figure.subplots()
    axes.plot(result.lrs, result.raw_losses, color="tab:blue", alpha=0.25, linewidth=0.8, label="loss per step")
    axes.plot(result.lrs, result.losses, color="tab:blue", label="smoothed loss")
    at = min(range(len(result.lrs)), key=lambda i: abs(math.log(result.lrs[i] / result.suggestion)))
    axes.plot([result.suggestion], [result.losses[at]], "o", color="tab:red", markersize=8,
              label=f"suggestion: {result.suggestion:.2g} (lowest loss / 10)")  # fmt: skip
    axes.axvline(result.suggestion, color="tab:red", linestyle=":", linewidth=1)
    axes.axvline(result.min_loss_lr, color="grey", linestyle=":", linewidth=1, label="lowest smoothed loss")
    axes.set_xscale("log")
    top = max(result.losses[: max(1, len(result.losses) - 5)])  # not the last steps, where the loss shoots up
    axes.set_ylim(min(min(result.losses), min(result.raw_losses)) * 0.9, top * 1.1)
    axes.set(xlabel="learning rate (log scale)", ylabel="training loss",
             title=f"LR range test: {result.phase}, {result.steps} steps")  # fmt: skip
    axes.grid(alpha=0.3)
    axes.legend()
    plot = run_dir / PLOT_FILE
    write_atomically(plot, lambda path: figure.savefig(path, dpi=80, format="png"))
    data = {**result.summary(), "lrs": result.lrs, "losses": result.losses, "raw_losses": result.raw_losses}
    report.write_json(run_dir / RESULT_FILE, data)
    return plot


def decide_lr(context: RunContext) -> RunContext:
    """``--lr auto``: the run with the range test's suggestion as its learning rate, recorded in its ``choices``."""
    if context.config.lr != "auto":
        return context
    test = find(Trainer(context))
    if context.dist.is_main:
        write(test, context.run_dir)
    return dataclasses.replace(
        context,
        config=revalidated(context.config, lr=test.suggestion),
        choices={**context.choices, "lr_finder": test.summary()},
    )


def find(trainer: Trainer, **options: Any) -> RangeTest:
    """The range test on every process, rank 0's suggestion for all (each process sees its own shard)."""
    result = range_test(trainer, **options)
    chosen = distributed.broadcast(result.suggestion, trainer.context.dist)
    if chosen != result.suggestion:
        result = RangeTest(**{**asdict(result), "suggestion": chosen})
    logger.info(
        "learning-rate range test (%s, %d steps, %.1f s): suggestion %.2g; the loss was lowest at %.2g; %s",
        result.phase,
        result.steps,
        result.seconds,
        result.suggestion,
        result.min_loss_lr,
        result.stop,
    )
    return result

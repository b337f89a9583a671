"""The ``Trainer``: runs the transfer phases of a prepared run (``training.engine.run.RunContext``) epoch by
epoch, keeps the best epoch's weights, and after each epoch writes the history, the curves and the checkpoint
(rank 0). It returns a ``TrainingOutcome``; ``training.fit`` evaluates and exports that. What each phase trains on
comes from ``training.engine.inputs``.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from training import diagnosis, report
from training.data.samplers import class_weights
from training.data.transforms import batch_mix
from training.engine import checkpoint, distributed
from training.engine.inputs import PhaseInputs, RunInputs
from training.engine.loop import Batches, EarlyStopping, EpochStats, evaluate, train_one_epoch
from training.engine.optim import build_optimizer, make_schedule, make_scheduler, parameter_groups
from training.engine.outcome import TrainingOutcome
from training.engine.run import RunContext
from training.engine.transfer import Phase, apply_phase, backbone_stages, count_parameters, plan_phases, set_train_mode
from training.errors import InterruptedTrainingError, UserError
from training.tensorboard import TensorBoardLog

logger = logging.getLogger(__name__)

# curves.png is redrawn after an epoch only when the last drawing is this old (and at the end): drawing takes about
# a second, nothing next to an epoch of images, but most of an epoch on cached features.
CURVES_EVERY_S = 10.0


@dataclass
class Progress:
    """Where training stands; saved with every checkpoint."""

    epoch: int = 0  # epochs completed over all phases
    phase: int = 0  # the phase of the last completed epoch
    phase_epochs: int = 0  # epochs completed in that phase
    stopped_early: bool = False  # the phase of the last completed epoch ended by early stopping
    history: list[dict[str, Any]] = field(default_factory=list)
    parameters: dict[str, list[int]] = field(default_factory=dict)  # phase name -> [trainable, total]


class Trainer:
    """Runs the phases of a prepared run: ``restore()`` continues a checkpoint, ``run()`` trains and returns the
    outcome. ``board`` (rank 0, ``--tensorboard``) receives each epoch's row."""

    def __init__(self, context: RunContext, *, board: TensorBoardLog | None = None) -> None:
        self.context = context
        self.board = board
        config, data = context.config, context.data
        self.stages = backbone_stages(context.network.backbone)
        self.inputs = RunInputs(context)
        weights = class_weights(data.counts(data.train)) if config.class_weights == "auto" else None
        self.criterion = nn.CrossEntropyLoss(
            weight=weights.to(context.device) if weights is not None else None, label_smoothing=config.label_smoothing
        )
        self.val_criterion = nn.CrossEntropyLoss()  # validation loss is the plain one, comparable across runs
        self.mix = batch_mix(config.mixup, config.cutmix, len(data.classes))
        self.stopper = EarlyStopping(config.monitor, config.patience)
        self.progress = Progress()
        self.best_state: dict[str, torch.Tensor] | None = None
        self._resume: dict[str, Any] | None = None
        self._curves = (time.monotonic(), 0)  # when curves.png was drawn, and up to which epoch

    @property
    def train_loader(self) -> Batches:
        return self.inputs.train_loader

    @property
    def val_loader(self) -> Batches:
        return self.inputs.val_loader

    def phase_inputs(self, phase: Phase) -> PhaseInputs:
        """What ``phase`` trains, on what (``training.engine.inputs``)."""
        return self.inputs.for_phase(phase)

    # --- resume ---------------------------------------------------------------------------------------------

    def restore(self, saved: checkpoint.Checkpoint) -> None:
        state = saved.state
        self.context.network.load_state_dict(saved.model)
        self.progress = Progress(**state["progress"])
        self.stopper.load_state_dict(state["stopper"])
        best_path = self.context.run_dir / checkpoint.CHECKPOINT_DIR / checkpoint.BEST_TENSORS
        self.best_state = checkpoint.load_weights(best_path) if best_path.is_file() else None
        self._resume = state
        logger.info("resuming %s after epoch %d", self.context.run_dir, self.progress.epoch)

    # --- training -------------------------------------------------------------------------------------------

    def run(self) -> TrainingOutcome:
        """Train every phase (from where ``restore`` left off) and return the network of the best epoch.

        Ctrl-C becomes ``InterruptedTrainingError``, naming the run folder whose checkpoint continues the run."""
        self._curves = (time.monotonic(), self.progress.epoch)
        try:
            self._run_phases()
        except KeyboardInterrupt:
            raise InterruptedTrainingError(self.context.run_dir, self.progress.epoch) from None
        finally:
            if self.context.dist.is_main and self._curves[1] != self.progress.epoch and self.progress.history:
                self._plot_curves()
        network = self.context.network
        if self.best_state is not None:
            network.load_state_dict(self.best_state)
        frozen_throughout = all(phase.trainable_stages == 0 for phase in plan_phases(self.context.config))
        return TrainingOutcome(
            network=network,
            best_epoch=self.stopper.best_epoch,
            epochs=self.progress.epoch,
            history=list(self.progress.history),
            parameters=dict(self.progress.parameters),
            feature_cache=self.inputs.feature_cache_note(),
            features=self.inputs.features if frozen_throughout else None,
        )

    def _plot_curves(self) -> None:
        report.plot_curves(self.progress.history, self.context.run_dir / "curves.png", self.stopper.best_epoch)
        self._curves = (time.monotonic(), self.progress.epoch)

    def _run_phases(self) -> None:
        phases = plan_phases(self.context.config)
        pending, first = self._resume, 0
        if pending is not None:
            # A phase is finished when it stopped early or ran its epochs: more --epochs on resume extend the last.
            current = self.progress.phase
            done = self.progress.stopped_early or self.progress.phase_epochs >= phases[current].epochs
            first = current + 1 if done else current
            if first >= len(phases):
                raise UserError(
                    f"the run in {self.context.run_dir} already finished ({self.progress.epoch} epochs); "
                    "resume with more --epochs to train further"
                )
        for index in range(first, len(phases)):
            continuing = pending is not None and index == self.progress.phase
            self._run_phase(index, phases[index], pending if continuing else None, rng=pending)
            pending = None

    def build_optimizer(self, phase: Phase, lr: float) -> torch.optim.Optimizer:
        """The phase's optimiser at base rate ``lr`` (its groups scaled by the phase and the layer decay)."""
        config, network = self.context.config, self.context.network
        groups = parameter_groups(
            network, self.stages, phase, lr=lr, weight_decay=config.weight_decay, layer_decay=config.layer_decay
        )
        return build_optimizer(config.optimizer, groups, lr=lr, momentum=config.momentum, nesterov=config.nesterov)

    def _run_phase(self, index: int, phase: Phase, resume: dict[str, Any] | None, rng: dict[str, Any] | None) -> None:
        config, network, precision = self.context.config, self.context.network, self.context.precision
        apply_phase(network, self.stages, phase)
        trainable, total = count_parameters(network)
        self.progress.parameters[phase.name] = [trainable, total]
        logger.info(
            "phase %s (%d epochs): %s of %s parameters train (%.1f%%)",
            phase.name,
            phase.epochs,
            report.format_count(trainable),
            report.format_count(total),
            100 * trainable / total,
        )
        inputs = self.phase_inputs(phase)
        if inputs.cached:
            logger.info("phase %s trains the classifier on cached features", phase.name)
        self._curves = (time.monotonic(), self._curves[1])  # computing the features is not an epoch to draw
        model = distributed.wrap(inputs.module, self.context.dist, self.context.device)
        optimizer = self.build_optimizer(phase, config.base_lr)
        schedule = make_schedule(config, steps_per_epoch=len(inputs.train_loader), epochs=phase.epochs)
        scheduler = make_scheduler(optimizer, schedule)
        start = 0
        if resume is not None:
            optimizer.load_state_dict(checkpoint.optimizer_state(resume["optimizer"]))
            scheduler.load_state_dict(resume["scheduler"])
            if precision.scaler is not None and resume.get("scaler"):
                precision.scaler.load_state_dict(resume["scaler"])
            start = self.progress.phase_epochs
        else:
            self.stopper.new_phase()
        if rng is not None:
            checkpoint.set_rng_state(rng["rng"])  # last, so the epoch below draws what it would have drawn
        self.progress.phase, self.progress.stopped_early = index, False
        classes = len(self.context.data.classes)
        for phase_epoch in range(start, phase.epochs):
            self.progress.phase_epochs = phase_epoch
            epoch = self.progress.epoch + 1
            inputs.train_loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
            if inputs.cached:
                model.train()  # the head alone: dropout on
            else:
                set_train_mode(model, network)
            desc = f"epoch {epoch}/{config.epochs}"
            trained = train_one_epoch(
                model,
                inputs.train_loader,
                optimizer,
                scheduler,
                self.criterion,
                inputs.step,
                l1=config.l1,
                clip_grad_norm=config.clip_grad_norm,
                mix=self.mix,
                num_classes=classes,
                description=desc,
            )
            validated = evaluate(
                model, inputs.val_loader, self.val_criterion, inputs.step, num_classes=classes,
                description=f"{desc} val",
            )  # fmt: skip
            improved = self._record(epoch, phase, optimizer, trained, validated)
            self.progress.epoch, self.progress.phase_epochs = epoch, phase_epoch + 1
            stop = self.stopper.should_stop
            self.progress.stopped_early = stop
            if self.context.dist.is_main:
                self._write_epoch(optimizer, scheduler, improved)
            if stop:
                logger.info(
                    "early stopping: no improvement of %s for %d epochs (best: epoch %d)",
                    config.monitor,
                    self.stopper.bad_epochs,
                    self.stopper.best_epoch,
                )
                break
        if self.best_state is not None and self.progress.epoch != self.stopper.best_epoch:
            network.load_state_dict(self.best_state)  # the next phase (or the export) starts from the best epoch

    def _record(
        self, epoch: int, phase: Phase, optimizer: torch.optim.Optimizer, trained: EpochStats, validated: EpochStats
    ) -> bool:
        row = {
            "epoch": epoch,
            "phase": phase.name,
            "lr": optimizer.param_groups[0]["lr"],
            "train_images": trained.samples,
            "train_loss": trained.loss,
            "train_accuracy": trained.accuracy,
            "train_macro_f1": trained.macro_f1,
            "val_loss": validated.loss,
            "val_accuracy": validated.accuracy,
            "val_macro_f1": validated.macro_f1,
            "seconds": round(trained.seconds + validated.seconds, 2),
            "images_per_second": round(trained.images_per_second, 1),
        }
        self.progress.history.append(row)
        config = self.context.config
        value = validated.loss if config.monitor == "val_loss" else validated.accuracy
        improved = self.stopper.update(value, epoch)
        if improved:
            state = self.context.network.state_dict()
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
        logger.info(
            "epoch %d/%d: train loss %.4f acc %.2f%% | val loss %.4f acc %.2f%% F1 %.3f | %.0f img/s, %.0f s%s",
            epoch,
            config.epochs,
            trained.loss,
            100 * trained.accuracy,
            validated.loss,
            100 * validated.accuracy,
            validated.macro_f1,
            trained.images_per_second,
            row["seconds"],
            " (best)" if improved else "",
        )
        return improved

    def _write_epoch(self, optimizer: torch.optim.Optimizer, scheduler: Any, improved: bool) -> None:
        run_dir, network, scaler = self.context.run_dir, self.context.network, self.context.precision.scaler
        folder = run_dir / checkpoint.CHECKPOINT_DIR
        folder.mkdir(parents=True, exist_ok=True)
        state = {
            "config": self.context.config.hyperparameters(),
            "fingerprint": self.context.data.fingerprint,
            "choices": self.context.choices,
            "progress": copy.deepcopy(self.progress.__dict__),
            "stopper": self.stopper.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": checkpoint.rng_state(),
        }
        report.write_history(run_dir, self.progress.history)
        if time.monotonic() - self._curves[0] >= CURVES_EVERY_S:
            self._plot_curves()
        if self.board is not None:
            self.board.epoch(self.progress.history[-1])
        if improved:
            checkpoint.save_weights(folder / checkpoint.BEST_TENSORS, network, self.progress.epoch)
        checkpoint.save_checkpoint(folder, network, state)  # last: the checkpoint is the commit point
        note = diagnosis.overfitting_note(self.progress.history)
        if note:
            logger.warning("%s", note)

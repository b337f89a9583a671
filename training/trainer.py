"""The ``Trainer``: runs the transfer phases of a prepared run (``training.run.RunContext``) epoch by epoch, keeps
the best epoch's weights, and after each epoch writes the history, the curves and the checkpoint (rank 0). It
returns a ``TrainingOutcome``; ``training.fit`` evaluates and exports that.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from training import checkpoint, distributed, report
from training.data import ImageDataset, eval_dataset, make_loader, train_transform
from training.errors import InterruptedTrainingError, UserError
from training.loop import EarlyStopping, EpochStats, evaluate, train_one_epoch
from training.optim import build_optimizer, make_schedule, make_scheduler, parameter_groups
from training.run import RunContext, TrainingOutcome
from training.transfer import Phase, apply_phase, backbone_stages, count_parameters, plan_phases, set_train_mode

logger = logging.getLogger(__name__)


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
    outcome."""

    def __init__(self, context: RunContext) -> None:
        self.context = context
        config, prep, data, dist = context.config, context.prep, context.data, context.dist
        self.stages = backbone_stages(context.network.backbone)
        pin = context.device.type == "cuda"
        augment = train_transform(prep, config.augment, hflip=config.hflip)
        train_set = ImageDataset(data.train, augment, draft_size=prep.resize_size)
        self.train_loader = make_loader(
            train_set,
            batch_size=config.batch_size,
            train=True,
            seed=config.seed,
            workers=context.workers,
            rank=dist.rank,
            world_size=dist.world_size,
            pin_memory=pin,
        )
        val_shard = data.val[dist.rank :: dist.world_size]  # each process scores its share; the sums are reduced
        self.val_loader = make_loader(
            eval_dataset(val_shard, prep),
            batch_size=config.batch_size,
            train=False,
            seed=config.seed,
            workers=context.workers,
            pin_memory=pin,
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.val_criterion = nn.CrossEntropyLoss()  # validation loss is the plain one, comparable across runs
        self.stopper = EarlyStopping(config.monitor, config.patience)
        self.progress = Progress()
        self.best_state: dict[str, torch.Tensor] | None = None
        self._resume: dict[str, Any] | None = None

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
        try:
            self._run_phases()
        except KeyboardInterrupt:
            raise InterruptedTrainingError(self.context.run_dir, self.progress.epoch) from None
        network = self.context.network
        if self.best_state is not None:
            network.load_state_dict(self.best_state)
        return TrainingOutcome(
            network=network,
            best_epoch=self.stopper.best_epoch,
            epochs=self.progress.epoch,
            history=list(self.progress.history),
            parameters=dict(self.progress.parameters),
        )

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
        model = distributed.wrap(network, self.context.dist, self.context.device)
        groups = parameter_groups(
            network, self.stages, phase, lr=config.lr, weight_decay=config.weight_decay, layer_decay=config.layer_decay
        )
        optimizer = build_optimizer(
            config.optimizer, groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov
        )
        schedule = make_schedule(config, steps_per_epoch=len(self.train_loader), epochs=phase.epochs)
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
        for phase_epoch in range(start, phase.epochs):
            self.progress.phase_epochs = phase_epoch
            epoch = self.progress.epoch + 1
            self.train_loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
            set_train_mode(model, network)
            desc = f"epoch {epoch}/{config.epochs}"
            trained = train_one_epoch(
                model,
                self.train_loader,
                optimizer,
                scheduler,
                self.criterion,
                self.context.step,
                l1=config.l1,
                clip_grad_norm=config.clip_grad_norm,
                description=desc,
            )
            validated = evaluate(
                model, self.val_loader, self.val_criterion, self.context.step, description=f"{desc} val"
            )
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
            "val_loss": validated.loss,
            "val_accuracy": validated.accuracy,
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
            "epoch %d/%d: train loss %.4f acc %.2f%% | val loss %.4f acc %.2f%% | %.0f img/s, %.0f s%s",
            epoch,
            config.epochs,
            trained.loss,
            100 * trained.accuracy,
            validated.loss,
            100 * validated.accuracy,
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
            "progress": copy.deepcopy(self.progress.__dict__),
            "stopper": self.stopper.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": checkpoint.rng_state(),
        }
        report.write_history(run_dir, self.progress.history)
        report.plot_curves(self.progress.history, run_dir / "curves.png", self.stopper.best_epoch)
        if improved:
            checkpoint.save_weights(folder / checkpoint.BEST_TENSORS, network, self.progress.epoch)
        checkpoint.save_checkpoint(folder, network, state)  # last: the checkpoint is the commit point
        note = report.overfitting_note(self.progress.history)
        if note:
            logger.warning("%s", note)

"""``fit``: check the weights, read the data, build the network, train phase by phase, keep the best epoch,
measure it, export it as a bundle and write the report.

One process or many (``torchrun``): every process trains on its shard; only rank 0 writes files.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelspec.bundle import Bundle
from modelspec.network import ClassifierNet
from modelspec.spec import ModelSpec, Preprocessing, Provenance
from training import backbones, checkpoint, distributed, report
from training.config import FitConfig
from training.data import (
    ImageDataset,
    ImageFolder,
    Sample,
    default_workers,
    eval_dataset,
    fingerprint,
    make_loader,
    scan_image_folder,
    stratified_split,
    train_transform,
)
from training.distributed import DistInfo
from training.errors import DataError, InterruptedTrainingError, UserError
from training.loop import EarlyStopping, EpochStats, Step, evaluate, predict, train_one_epoch
from training.metrics import classification_metrics, summary_line
from training.optim import build_optimizer, make_schedule, make_scheduler, parameter_groups
from training.transfer import Phase, Stage, apply_phase, backbone_stages, count_parameters, plan_phases, set_train_mode

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
MAX_CLASSES_IN_SPEC_MATRIX = 30


@dataclass(frozen=True)
class Data:
    """The samples a run trains and validates on, and what the report says about them."""

    classes: tuple[str, ...]
    train: list[Sample]
    val: list[Sample]
    val_source: str
    test: ImageFolder | None
    skipped: list[tuple[Path, str]]
    fingerprint: str

    def counts(self, samples: list[Sample]) -> list[int]:
        found = [0] * len(self.classes)
        for _, label in samples:
            found[label] += 1
        return found


def load_data(config: FitConfig) -> Data:
    """Scan and check the folders, then split; every data error surfaces here, before training starts."""
    folder = scan_image_folder(config.data)
    folders = [folder]
    if config.val_data is not None:
        val_folder = scan_image_folder(config.val_data, folder.classes)
        folders.append(val_folder)
        train, val, source = list(folder.samples), list(val_folder.samples), f"folder {config.val_data}"
    else:
        train, val = stratified_split(folder.samples, config.val_fraction, config.seed)
        source = f"stratified {config.val_fraction:.0%} split of {config.data} (seed {config.seed})"
        if not val:
            raise DataError(f"{config.data} is too small to split off validation images; pass --val-data DIR")
    test = scan_image_folder(config.test_data, folder.classes) if config.test_data is not None else None
    skipped = [item for f in [*folders, *([test] if test else [])] for item in f.skipped]
    return Data(folder.classes, train, val, source, test, skipped, fingerprint(folders))


@dataclass
class FitResult:
    run_dir: Path
    bundle: Bundle | None
    metrics: dict[str, Any]
    report: str


@dataclass
class Progress:
    """Where training stands; saved with every checkpoint."""

    epoch: int = 0  # epochs completed over all phases
    phase: int = 0  # the phase of the last completed epoch
    phase_epochs: int = 0  # epochs completed in that phase
    phase_done: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    parameters: dict[str, list[int]] = field(default_factory=dict)  # phase name -> [trainable, total]


class Trainer:
    """Holds what the phases share and runs them: ``run()`` trains, ``best_network()`` gives the result."""

    def __init__(
        self,
        config: FitConfig,
        network: ClassifierNet,
        stages: list[Stage],
        data: Data,
        prep: Preprocessing,
        dist: DistInfo,
        device: torch.device,
    ) -> None:
        self.config, self.network, self.stages, self.dist, self.device = config, network, stages, dist, device
        self.fingerprint = data.fingerprint
        self.run_dir = config.run_dir or Path("runs")
        self.precision = distributed.make_precision(device, config.amp)
        self.step = Step(
            device=device,
            precision=self.precision,
            memory_format=distributed.memory_format(config.channels_last),
            dist=dist,
            progress=not config.quiet and dist.is_main,
        )
        workers = config.workers if config.workers is not None else default_workers(dist.world_size)
        pin = device.type == "cuda"
        augment = train_transform(prep, config.augment, hflip=config.hflip)
        train_set = ImageDataset(data.train, augment, draft_size=prep.resize_size)
        self.train_loader = make_loader(
            train_set,
            batch_size=config.batch_size,
            train=True,
            seed=config.seed,
            workers=workers,
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
            workers=workers,
            pin_memory=pin,
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.val_criterion = nn.CrossEntropyLoss()  # validation loss is the plain one, comparable across runs
        self.stopper = EarlyStopping(config.monitor, config.patience)
        self.progress = Progress()
        self.best_state: dict[str, torch.Tensor] | None = None
        self.workers = workers
        self._resume: dict[str, Any] | None = None

    # --- resume ---------------------------------------------------------------------------------------------

    def restore(self, saved: checkpoint.Checkpoint) -> None:
        state = saved.state
        self.network.load_state_dict(saved.model)
        self.progress = Progress(**state["progress"])
        self.stopper.load_state_dict(state["stopper"])
        best_path = self.run_dir / CHECKPOINT_DIR / checkpoint.BEST_TENSORS
        self.best_state = checkpoint.load_weights(best_path) if best_path.is_file() else None
        self._resume = state
        logger.info("resuming %s after epoch %d", self.run_dir, self.progress.epoch)

    # --- training -------------------------------------------------------------------------------------------

    def run(self) -> None:
        phases = plan_phases(self.config)
        pending = self._resume
        first = self.progress.phase + (1 if self.progress.phase_done else 0) if pending else 0
        if pending and first >= len(phases):
            raise UserError(f"the run in {self.run_dir} already finished ({self.progress.epoch} epochs)")
        for index in range(first, len(phases)):
            continuing = pending is not None and index == self.progress.phase and not self.progress.phase_done
            self._run_phase(index, phases[index], pending if continuing else None, rng=pending)
            pending = None

    def _run_phase(self, index: int, phase: Phase, resume: dict[str, Any] | None, rng: dict[str, Any] | None) -> None:
        config, network = self.config, self.network
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
        model = distributed.wrap(network, self.dist, self.device)
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
            if self.precision.scaler is not None and resume.get("scaler"):
                self.precision.scaler.load_state_dict(resume["scaler"])
            start = self.progress.phase_epochs
        else:
            self.stopper.new_phase()
        if rng is not None:
            checkpoint.set_rng_state(rng["rng"])  # last, so the epoch below draws what it would have drawn
        self.progress.phase, self.progress.phase_done = index, False
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
                self.step,
                l1=config.l1,
                clip_grad_norm=config.clip_grad_norm,
                description=desc,
            )
            validated = evaluate(model, self.val_loader, self.val_criterion, self.step, description=f"{desc} val")
            improved = self._record(epoch, phase, optimizer, trained, validated)
            self.progress.epoch, self.progress.phase_epochs = epoch, phase_epoch + 1
            stop = self.stopper.should_stop
            self.progress.phase_done = stop or phase_epoch + 1 == phase.epochs
            if self.dist.is_main:
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
        value = validated.loss if self.config.monitor == "val_loss" else validated.accuracy
        improved = self.stopper.update(value, epoch)
        if improved:
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.network.state_dict().items()}
        logger.info(
            "epoch %d/%d: train loss %.4f acc %.2f%% | val loss %.4f acc %.2f%% | %.0f img/s, %.0f s%s",
            epoch,
            self.config.epochs,
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
        folder = self.run_dir / CHECKPOINT_DIR
        folder.mkdir(parents=True, exist_ok=True)
        state = {
            "config": self.config.hyperparameters(),
            "fingerprint": self.fingerprint,
            "progress": copy.deepcopy(self.progress.__dict__),
            "stopper": self.stopper.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": self.precision.scaler.state_dict() if self.precision.scaler is not None else None,
            "rng": checkpoint.rng_state(),
        }
        report.write_history(self.run_dir, self.progress.history)
        report.plot_curves(self.progress.history, self.run_dir / "curves.png", self.stopper.best_epoch)
        if improved:
            checkpoint.save_weights(folder / checkpoint.BEST_TENSORS, self.network, self.progress.epoch)
        checkpoint.save_checkpoint(folder, self.network, state)  # last: the checkpoint is the commit point
        note = report.overfitting_note(self.progress.history)
        if note:
            logger.warning("%s", note)

    def best_network(self) -> ClassifierNet:
        if self.best_state is not None:
            self.network.load_state_dict(self.best_state)
        return self.network


def fit(config: FitConfig, *, resume: checkpoint.Checkpoint | None = None) -> FitResult:
    """Train as ``config`` says (continuing ``resume`` if given) and export the best epoch as a bundle."""
    dist = distributed.from_environment()
    device = distributed.resolve_device(config.device, dist)
    distributed.init_process_group(dist, device)
    try:
        return _fit(config, resume, dist, device)
    finally:
        distributed.destroy_process_group(dist)


def _fit(config: FitConfig, resume: checkpoint.Checkpoint | None, dist: DistInfo, device: torch.device) -> FitResult:
    started = time.perf_counter()
    info = backbones.resolve(config.backbone, config.batch_norm)
    backbones.check_pretrained_available(info, config.pretrained, config.weights)  # seconds, before any data
    prep = backbones.preprocessing_for(info, config.image_size, config.crop_pct)
    data = load_data(config)
    if resume is not None and resume.state.get("fingerprint") != data.fingerprint:
        raise DataError("the data changed since the checkpoint was written (its fingerprint differs); start a new run")
    config = _resolved(config, prep, dist)
    if resume is None and config.run_dir is not None and (config.run_dir / CHECKPOINT_DIR).exists():
        raise UserError(
            f"{config.run_dir} holds another run; continue it with --resume {config.run_dir} or choose "
            "another --run-dir"
        )
    torch.manual_seed(config.seed)
    built = backbones.build(
        info, pretrained=config.pretrained, weights=config.weights, dropout=config.dropout, batch_norm=config.batch_norm
    )
    network = ClassifierNet(built.module, built.embedding_size, len(data.classes), config.dropout)
    network.to(device)
    network.to(memory_format=distributed.memory_format(config.channels_last))
    trainer = Trainer(config, network, backbone_stages(built.module, info.family), data, prep, dist, device)
    if resume is not None:
        trainer.restore(resume)
    _log_start(config, info, built, data, prep, dist, device, trainer)
    try:
        trainer.run()
    except KeyboardInterrupt:
        raise InterruptedTrainingError(trainer.run_dir, trainer.progress.epoch) from None
    best = trainer.best_network()
    result = FitResult(config.run_dir or Path(), None, {}, "")
    if dist.is_main:
        result = _finish(config, trainer, best, built, data, prep, time.perf_counter() - started)
    distributed.barrier(dist)
    return result


def _resolved(config: FitConfig, prep: Preprocessing, dist: DistInfo) -> FitConfig:
    """The configuration with every default filled in (what the bundle and the checkpoints record)."""
    run_dir = config.run_dir
    if run_dir is None and dist.is_main:
        run_dir = Path("runs") / f"{config.model_name}-{datetime.now():%Y%m%d-%H%M%S}"
        while run_dir.exists():
            run_dir = run_dir.with_name(run_dir.name + "-1")
    run_dir = distributed.broadcast(run_dir, dist)
    return config.model_copy(
        update={
            "run_dir": run_dir,
            "name": config.model_name,
            "image_size": prep.crop_size,
            "crop_pct": round(prep.crop_size / prep.resize_size, 4),
        }
    )


def _log_start(
    config: FitConfig,
    info: backbones.BackboneInfo,
    built: backbones.BuiltBackbone,
    data: Data,
    prep: Preprocessing,
    dist: DistInfo,
    device: torch.device,
    trainer: Trainer,
) -> None:
    logger.info("run folder %s", config.run_dir)
    logger.info(
        "data: %d training and %d validation images in %d classes (%s); %d unreadable files skipped",
        len(data.train),
        len(data.val),
        len(data.classes),
        data.val_source,
        len(data.skipped),
    )
    logger.info(
        "network: %s (%s/%s), %s, %d px (resize %d, %s)",
        info.name,
        info.family,
        info.model,
        built.base_weights or "random initialisation",
        prep.crop_size,
        prep.resize_size,
        prep.interpolation,
    )
    logger.info(
        "device %s x %d process(es), %s, %d loader workers, batch %d per process",
        device,
        dist.world_size,
        trainer.precision.label,
        trainer.workers,
        config.batch_size,
    )


def _evaluate_samples(
    network: ClassifierNet, samples: list[Sample], prep: Preprocessing, classes: tuple[str, ...], trainer: Trainer
) -> dict[str, Any]:
    loader = make_loader(
        eval_dataset(samples, prep), batch_size=trainer.config.batch_size, train=False, seed=0, workers=trainer.workers
    )
    logits, labels = predict(network, loader, trainer.step)
    return classification_metrics(logits, labels, classes)


def _finish(
    config: FitConfig,
    trainer: Trainer,
    network: ClassifierNet,
    built: backbones.BuiltBackbone,
    data: Data,
    prep: Preprocessing,
    seconds: float,
) -> FitResult:
    """Measure the best epoch on validation (and test) data, write the figures, export the bundle, report."""
    run_dir = trainer.run_dir
    network.to(memory_format=torch.contiguous_format)
    metrics: dict[str, Any] = {
        "best_epoch": trainer.stopper.best_epoch,
        "epochs_trained": trainer.progress.epoch,
        "monitor": config.monitor,
        "parameters": {name: {"trainable": t, "total": n} for name, (t, n) in trainer.progress.parameters.items()},
        "val": _evaluate_samples(network, data.val, prep, data.classes, trainer),
    }
    if data.test is not None:
        metrics["test"] = _evaluate_samples(network, list(data.test.samples), prep, data.classes, trainer)
    report.write_json(run_dir / "metrics.json", metrics)
    for split in ("val", "test"):
        if split in metrics:
            report.plot_confusion(
                metrics[split]["confusion_matrix"],
                data.classes,
                run_dir / f"confusion_{split}.png",
                f"{config.model_name}: {split} confusion matrix",
            )
    bundle = None
    if config.export:
        bundle = _export(config, trainer, network, built, data, prep, metrics)
    text = _report_text(config, trainer, built, data, prep, metrics, bundle, seconds)
    (run_dir / "report.md").write_text(text, encoding="utf-8")
    return FitResult(run_dir, bundle, metrics, text)


def _export(
    config: FitConfig,
    trainer: Trainer,
    network: ClassifierNet,
    built: backbones.BuiltBackbone,
    data: Data,
    prep: Preprocessing,
    metrics: dict[str, Any],
) -> Bundle:
    from training.export import export_bundle

    spec_metrics = copy.deepcopy(metrics)
    if len(data.classes) > MAX_CLASSES_IN_SPEC_MATRIX:  # keep model.json small; the run folder has the matrix
        for split in ("val", "test"):
            spec_metrics.get(split, {}).pop("confusion_matrix", None)
    hyperparameters = config.hyperparameters()
    hyperparameters["runtime"] = {
        "world_size": trainer.dist.world_size,
        "device": trainer.device.type,
        "precision": trainer.precision.label,
        "workers": trainer.workers,
    }
    spec = ModelSpec(
        name=config.model_name,
        description=f"{config.backbone} fine-tuned on {config.data.name} ({len(data.classes)} classes) by imgclf",
        architecture=built.architecture,
        num_classes=len(data.classes),
        labels=list(data.classes),
        preprocessing=prep,
        embedding_size=built.embedding_size,
        metrics=spec_metrics,
        hyperparameters=hyperparameters,
        provenance=Provenance(base_weights=built.base_weights, dataset_fingerprint=data.fingerprint),
    )
    samples = eval_dataset(data.val[:4], prep)
    sample = torch.stack([samples[i][0] for i in range(len(samples))])
    return export_bundle(network, spec, config.models_dir, sample=sample)


def _report_text(
    config: FitConfig,
    trainer: Trainer,
    built: backbones.BuiltBackbone,
    data: Data,
    prep: Preprocessing,
    metrics: dict[str, Any],
    bundle: Bundle | None,
    seconds: float,
) -> str:
    history = trainer.progress.history
    data_lines = [
        f"- training: {len(data.train)} images, validation: {len(data.val)} ({data.val_source}), "
        f"{len(data.classes)} classes",
        "- per class (train/val): "
        + ", ".join(
            f"{name} {t}/{v}"
            for name, t, v in zip(data.classes, data.counts(data.train), data.counts(data.val), strict=True)
        ),
        f"- unreadable files skipped: {len(data.skipped)}",
        *[f"  - {path}: {why}" for path, why in data.skipped[:20]],
        f"- fingerprint: {data.fingerprint}",
    ]
    network_lines = [
        f"- backbone: {config.backbone} ({built.architecture.family}/{built.architecture.name}), "
        f"starting from {built.base_weights or 'random initialisation'}",
        f"- input: {prep.crop_size} px (resize {prep.resize_size}, {prep.interpolation}), "
        f"mean {prep.mean}, std {prep.std}",
        f"- transfer mode: {config.mode}; optimiser {config.optimizer}, lr {config.lr:g}, schedule {config.schedule}",
        *[
            f"- phase {name}: {report.format_count(t)} of {report.format_count(n)} parameters train ({t / n:.1%})"
            for name, (t, n) in trainer.progress.parameters.items()
        ],
    ]
    training_lines = [
        f"- {trainer.progress.epoch} epochs in {seconds / 60:.1f} min; best epoch {trainer.stopper.best_epoch} "
        f"by {config.monitor} (its weights are the ones exported)",
    ]
    if history:
        rate = sum(r["images_per_second"] for r in history) / len(history)
        training_lines.append(f"- training throughput: {rate:.0f} images/s per process")
    note = report.overfitting_note(history)
    training_lines.append(f"- {note}" if note else "- no sign of overfitting in the validation loss")
    result_lines = [f"- validation: {summary_line(metrics['val'])}"]
    if "test" in metrics:
        result_lines.append(f"- test: {summary_line(metrics['test'])}")
    run_dir = trainer.run_dir
    files = [f"- run folder: {run_dir} (history.csv/json, curves.png, confusion_*.png, metrics.json, checkpoint/)"]
    files.append(f"- bundle: {bundle.path}" if bundle else "- bundle: not exported (--no-export)")
    return report.render(
        [
            ("Data", data_lines),
            ("Network", network_lines),
            ("Training", training_lines),
            ("Results", result_lines + report.per_class_lines(metrics["val"])),
            ("Files", files),
        ]
    )

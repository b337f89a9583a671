"""``fit``: check the weights, read the data, build the network, train it (``training.trainer``), measure the best
epoch, export it as a bundle and write the report.

One process or many (``torchrun``): every process trains on its shard; only rank 0 writes files.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from modelspec.bundle import Bundle
from modelspec.network import ClassifierNet
from modelspec.spec import ModelSpec, Preprocessing, Provenance
from training import backbones, checkpoint, distributed, report
from training.config import FitConfig
from training.data import Sample, TrainingData, eval_dataset, load_training_data, make_loader
from training.distributed import DistInfo
from training.errors import DataError, InterruptedTrainingError, UserError
from training.loop import predict
from training.metrics import classification_metrics, summary_line
from training.trainer import CHECKPOINT_DIR, Trainer
from training.transfer import backbone_stages

logger = logging.getLogger(__name__)

MAX_CLASSES_IN_SPEC_MATRIX = 30


@dataclass
class FitResult:
    run_dir: Path
    bundle: Bundle | None
    metrics: dict[str, Any]
    report: str


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
    start = backbones.starting_weights(info, config.pretrained, config.weights)  # seconds, before any data
    prep = backbones.preprocessing_for(info, config.image_size, config.crop_pct)
    data = load_training_data(config)
    if resume is not None and resume.state.get("fingerprint") != data.fingerprint:
        raise DataError("the data changed since the checkpoint was written (its fingerprint differs); start a new run")
    config = _resolved(config, prep, dist)
    if resume is None and config.run_dir is not None and (config.run_dir / CHECKPOINT_DIR).exists():
        raise UserError(
            f"{config.run_dir} holds another run; continue it with --resume {config.run_dir} or choose "
            "another --run-dir"
        )
    torch.manual_seed(config.seed)
    built = backbones.build(info, start, dropout=config.dropout, batch_norm=config.batch_norm)
    network = ClassifierNet(built.module, built.embedding_size, len(data.classes), config.dropout)
    network.to(device)
    network.to(memory_format=distributed.memory_format(config.channels_last))
    trainer = Trainer(config, network, backbone_stages(built.module), data, prep, dist, device)
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
    data: TrainingData,
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
    data: TrainingData,
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
    data: TrainingData,
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
    data: TrainingData,
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

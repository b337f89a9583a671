"""``fit``: prepare the run (``training.run``: weights, data, network), train it (``training.trainer``), measure the
best epoch, export it as a bundle and write the report.

One process or many (``torchrun``): every process trains on its shard; only rank 0 writes files.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from modelspec.bundle import Bundle
from modelspec.spec import ModelSpec, Provenance
from training import report
from training.config import FitConfig
from training.data.datasets import eval_dataset
from training.data.folders import Sample
from training.data.loaders import make_loader
from training.engine import checkpoint, distributed
from training.engine.loop import predict
from training.engine.outcome import TrainingOutcome
from training.engine.run import RunContext, prepare_run
from training.engine.trainer import Trainer
from training.errors import ConfigError
from training.metrics import classification_metrics

if TYPE_CHECKING:
    from training.lr_finder import RangeTest
    from training.tensorboard import TensorBoardLog

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
    board: TensorBoardLog | None = None
    try:
        started = time.perf_counter()
        context = prepare_run(config, resume, dist, device)
        _log_start(context)
        if resume is not None:  # the decisions of the interrupted run stand; its configuration holds their results
            context = dataclasses.replace(context, choices=dict(resume.state.get("choices") or {}))
        else:
            context = decide_mode(context)
            context = _decide_lr(context)
        if context.config.tensorboard and dist.is_main:
            from training.tensorboard import TensorBoardLog

            board = TensorBoardLog(context.run_dir, resume_after=resume.state["progress"]["epoch"] if resume else 0)
        trainer = Trainer(context, board=board)
        if resume is not None:
            trainer.restore(resume)
        outcome = trainer.run()
        result = FitResult(context.run_dir, None, {}, "")
        if dist.is_main:
            result = _finish(context, outcome, time.perf_counter() - started, board)
        distributed.barrier(dist)
        return result
    finally:
        if board is not None:
            board.close()
        distributed.destroy_process_group(dist)


@dataclass
class FindLRResult:
    test: RangeTest
    plot: Path | None  # rank 0 only
    mode_note: str


def find_lr(config: FitConfig, **options: Any) -> FindLRResult:
    """``find-lr``: prepare the run as ``fit`` would, then the range test on its first phase; the plot and the
    numbers go to the run folder."""
    from training import lr_finder

    dist = distributed.from_environment()
    device = distributed.resolve_device(config.device, dist)
    distributed.init_process_group(dist, device)
    try:
        context = prepare_run(config, None, dist, device)
        _log_start(context)
        context = decide_mode(context)
        test = lr_finder.find(Trainer(context), **options)
        plot = lr_finder.write(test, context.run_dir) if dist.is_main else None
        choice = context.choices.get("mode_auto")
        return FindLRResult(test, plot, f"--mode auto chose {choice['mode']}: {choice['reason']}" if choice else "")
    finally:
        distributed.destroy_process_group(dist)


def decide_mode(context: RunContext) -> RunContext:
    """``--mode auto``: the transfer mode chosen from the data (``training.auto_mode``), recorded in the choices."""
    if context.config.mode != "auto":
        return context
    from training.auto_mode import choose_mode

    choice = choose_mode(context)
    return dataclasses.replace(
        context,
        config=_revalidated(context.config, mode=choice.mode),
        choices={**context.choices, "mode_auto": choice.summary()},
    )


def _decide_lr(context: RunContext) -> RunContext:
    """``--lr auto``: the range test's suggestion becomes the learning rate, recorded in the choices."""
    if context.config.lr != "auto":
        return context
    from training import lr_finder

    test = lr_finder.find(Trainer(context))
    if context.dist.is_main:
        lr_finder.write(test, context.run_dir)
    return dataclasses.replace(
        context,
        config=_revalidated(context.config, lr=test.suggestion),
        choices={**context.choices, "lr_finder": test.summary()},
    )


def _revalidated(config: FitConfig, **changes: Any) -> FitConfig:
    try:
        return FitConfig.model_validate({**config.model_dump(), **changes})
    except ValueError as exc:
        raise ConfigError(f"after choosing {changes}: {exc}") from exc


def _log_start(context: RunContext) -> None:
    config, data, prep, info = context.config, context.data, context.prep, context.backbone
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
        context.built.base_weights or "random initialisation",
        prep.crop_size,
        prep.resize_size,
        prep.interpolation,
    )
    logger.info(
        "device %s x %d process(es), %s, %d loader workers, batch %d per process",
        context.device,
        context.dist.world_size,
        context.precision.label,
        context.workers,
        config.batch_size,
    )


def _finish(
    context: RunContext, outcome: TrainingOutcome, seconds: float, board: TensorBoardLog | None = None
) -> FitResult:
    """Measure the best epoch on validation (and test) data, write the figures, export the bundle, report."""
    run_dir, data = context.run_dir, context.data
    outcome.network.to(memory_format=torch.contiguous_format)
    metrics: dict[str, Any] = {
        "best_epoch": outcome.best_epoch,
        "epochs_trained": outcome.epochs,
        "monitor": context.config.monitor,
        "parameters": {name: {"trainable": t, "total": n} for name, (t, n) in outcome.parameters.items()},
        "val": _evaluate_val(context, outcome),
    }
    if data.test is not None:
        metrics["test"] = _evaluate_samples(context, outcome, list(data.test.samples))
    report.write_json(run_dir / "metrics.json", metrics)
    for split in ("val", "test"):
        if split in metrics:
            report.plot_confusion(
                metrics[split]["confusion_matrix"],
                data.classes,
                run_dir / f"confusion_{split}.png",
                f"{context.config.model_name}: {split} confusion matrix",
            )
    if board is not None:
        _board_summary(board, context, outcome, metrics)
    bundle = _export(context, outcome, metrics) if context.config.export else None
    text = report.fit_report(context, outcome, metrics, bundle, seconds)
    (run_dir / "report.md").write_text(text, encoding="utf-8")
    return FitResult(run_dir, bundle, metrics, text)


def _board_summary(
    board: TensorBoardLog, context: RunContext, outcome: TrainingOutcome, metrics: dict[str, Any]
) -> None:
    """The end of the TensorBoard log: confusion matrices at the best epoch, the configuration and final scores."""
    for split in ("val", "test"):
        if split in metrics:
            board.confusion(split, context.run_dir / f"confusion_{split}.png", outcome.best_epoch)
    finals = {
        f"hparam/{split}_{key}": float(metrics[split][key])
        for split in ("val", "test")
        if split in metrics
        for key in ("accuracy", "macro_f1", "loss")
    }
    board.hyperparameters(_hyperparameters(context), finals)


def _hyperparameters(context: RunContext) -> dict[str, Any]:
    """The resolved configuration, with the choices made for the user (``mode_auto``, ``lr_finder``)."""
    return {**context.config.hyperparameters(), **context.choices}


def _evaluate_val(context: RunContext, outcome: TrainingOutcome) -> dict[str, Any]:
    """The validation metrics; from the cached embeddings when the backbone that computed them never trained."""
    if outcome.features is None:
        return _evaluate_samples(context, outcome, context.data.val)
    from training.engine.features import HeadNet

    head = HeadNet(outcome.network).eval()
    with torch.no_grad():
        logits, _ = head(outcome.features.val.to(context.device))
    labels = outcome.features.val_labels.numpy()
    return classification_metrics(logits.float().cpu().numpy(), labels, context.data.classes)


def _evaluate_samples(context: RunContext, outcome: TrainingOutcome, samples: list[Sample]) -> dict[str, Any]:
    loader = make_loader(
        eval_dataset(samples, context.prep),
        batch_size=context.config.batch_size,
        train=False,
        seed=0,
        workers=context.workers,
    )
    logits, labels = predict(outcome.network, loader, context.step)
    return classification_metrics(logits, labels, context.data.classes)


def _export(context: RunContext, outcome: TrainingOutcome, metrics: dict[str, Any]) -> Bundle:
    from training.export import export_bundle

    config, data, built = context.config, context.data, context.built
    spec_metrics = copy.deepcopy(metrics)
    # The per-epoch curves travel with the model, so its card can draw them (the service never reads the run folder).
    spec_metrics["history"] = [
        {key: row[key] for key in report.HISTORY_FIELDS if key in row} for row in outcome.history
    ]
    if len(data.classes) > MAX_CLASSES_IN_SPEC_MATRIX:  # keep model.json small; the run folder has the matrix
        for split in ("val", "test"):
            spec_metrics.get(split, {}).pop("confusion_matrix", None)
    hyperparameters = _hyperparameters(context)
    hyperparameters["runtime"] = {
        "world_size": context.dist.world_size,
        "device": context.device.type,
        "precision": context.precision.label,
        "workers": context.workers,
    }
    spec = ModelSpec(
        name=config.model_name,
        description=f"{config.backbone} fine-tuned on {config.data.name} ({len(data.classes)} classes) by imgclf",
        architecture=built.architecture,
        num_classes=len(data.classes),
        labels=list(data.classes),
        preprocessing=context.prep,
        embedding_size=built.embedding_size,
        metrics=spec_metrics,
        hyperparameters=hyperparameters,
        provenance=Provenance(base_weights=built.base_weights, dataset_fingerprint=data.fingerprint),
    )
    samples = eval_dataset(data.val[:4], context.prep)
    sample = torch.stack([samples[i][0] for i in range(len(samples))])
    return export_bundle(outcome.network, spec, config.models_dir, sample=sample)

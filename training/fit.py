"""``fit`` and ``find-lr``, top to bottom: prepare the run (``training.engine.run``: weights, data, network), make
the choices left to us (``training.auto_mode``, ``training.lr_finder``), train (``training.engine.trainer``), score
the best epoch (``training.scoring``), export it (``training.publish``) and write the report (``training.report``).

One process or many (``torchrun``): every process trains on its shard; only rank 0 writes files.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modelspec.bundle import Bundle
from modelspec.files import write_text_atomically
from training import lr_finder, report, trust_report
from training.auto_mode import decide_mode
from training.config import FitConfig
from training.engine import checkpoint, distributed
from training.engine.outcome import TrainingOutcome
from training.engine.run import RunContext, prepare_run
from training.engine.trainer import Trainer
from training.lr_finder import RangeTest, decide_lr
from training.publish import MAX_CLASSES_IN_SPEC_MATRIX, publish
from training.scoring import score
from training.tensorboard import TensorBoardLog
from training.test_split import add_test_metrics

logger = logging.getLogger(__name__)


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
            context = decide_lr(decide_mode(context))
        if context.config.tensorboard and dist.is_main:
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


def _finish(
    context: RunContext, outcome: TrainingOutcome, seconds: float, board: TensorBoardLog | None = None
) -> FitResult:
    """Score the best epoch on validation (and test) data, write the figures, export the bundle, report."""
    run_dir, config = context.run_dir, context.config
    outcome.network.to(memory_format=torch.contiguous_format)
    scores = score(context, outcome, test=not config.export)  # with a bundle, the test split goes through it
    classes = context.data.classes
    # The validation figure is drawn while the bundle is exported (ONNX Runtime and the exporter release the GIL).
    figures = _in_background(report.write_metrics, run_dir, scores.metrics, classes, config.model_name, ("val",))
    bundle = publish(context, outcome, scores) if config.export else None
    if bundle is not None and context.data.test is not None:
        metrics, bundle = add_test_metrics(
            bundle, list(context.data.test.samples), scores.metrics, MAX_CLASSES_IN_SPEC_MATRIX
        )
        scores = dataclasses.replace(scores, metrics=metrics)
    figures.join()
    report.write_metrics(run_dir, scores.metrics, classes, config.model_name, ("test",))
    if board is not None:
        board.summary(scores.metrics, outcome.best_epoch, run_dir, context.hyperparameters())
    if bundle is not None:
        trust_report.plot_reliability(bundle, run_dir / trust_report.RELIABILITY_FIGURE)
    text = report.fit_report(context, outcome, scores.metrics, bundle, seconds)
    write_text_atomically(run_dir / "report.md", text)
    return FitResult(run_dir, bundle, scores.metrics, text)


def _in_background(function: Callable[..., None], *args: Any) -> threading.Thread:
    """Run ``function`` on a thread; a failure is logged (a missing figure must not lose the bundle)."""

    def run() -> None:
        try:
            function(*args)
        except Exception:
            logger.exception("%s failed", getattr(function, "__name__", function))

    thread = threading.Thread(target=run, name="imgclf-figures", daemon=True)
    thread.start()
    return thread


@dataclass
class FindLRResult:
    test: RangeTest
    plot: Path | None  # rank 0 only
    mode_note: str


def find_lr(config: FitConfig, **options: Any) -> FindLRResult:
    """``find-lr``: prepare the run as ``fit`` would, then the range test on its first phase; the plot and the
    numbers go to the run folder."""
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

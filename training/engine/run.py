"""A fit run as data: what the trainer, the evaluation, the export and the report share (``RunContext``, built
once by ``prepare_run``). What training produced is ``training.engine.outcome.TrainingOutcome``.

``prepare_run`` checks everything that can be checked before training, cheapest first: the backbone name and its
weights (file lookups, seconds), the data (every image decoded once), the resume fingerprint and the run folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from modelspec.network import ClassifierNet
from modelspec.spec import Preprocessing
from training import backbones
from training.config import FitConfig
from training.data.hints import looks_like_text
from training.data.loaders import default_workers
from training.data.splits import TrainingData, load_training_data
from training.engine import checkpoint, distributed
from training.engine.distributed import DistInfo, Precision
from training.engine.loop import Step
from training.errors import DataError, UserError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunContext:
    """Everything a run works with, built once: the resolved configuration, the network, the data, the machine."""

    config: FitConfig  # resolved: run folder, name, image size and crop ratio filled in
    backbone: backbones.BackboneInfo
    built: backbones.BuiltBackbone
    network: ClassifierNet  # the built backbone with a new classifier, on the device
    data: TrainingData
    prep: Preprocessing
    step: Step  # device, precision, memory format, process group
    workers: int  # DataLoader workers per process
    # Decisions made for the user before training (--mode auto, --lr auto): what was measured and chosen, as JSON
    # data for the report, the bundle's hyperparameters and the checkpoint.
    choices: dict[str, Any] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir or Path("runs")

    @property
    def dist(self) -> DistInfo:
        return self.step.dist

    @property
    def device(self) -> torch.device:
        return self.step.device

    @property
    def precision(self) -> Precision:
        return self.step.precision

    def hyperparameters(self) -> dict[str, Any]:
        """The resolved configuration, with the choices made for the user (``mode_auto``, ``lr_finder``)."""
        return {**self.config.hyperparameters(), **self.choices}


def prepare_run(
    config: FitConfig, resume: checkpoint.Checkpoint | None, dist: DistInfo, device: torch.device
) -> RunContext:
    """Check the backbone, its weights and the data, resolve the configuration, and build the network."""
    info = backbones.resolve(config.backbone, config.batch_norm)
    start = backbones.starting_weights(info, config.pretrained, config.weights)  # seconds, before any data
    prep = backbones.preprocessing_for(info, config.image_size, config.crop_pct)
    data = load_training_data(config)
    if resume is not None and resume.state.get("fingerprint") != data.fingerprint:
        raise DataError("the data changed since the checkpoint was written (its fingerprint differs); start a new run")
    config = _resolved(config, prep, dist, data)
    if resume is None and config.run_dir is not None and (config.run_dir / checkpoint.CHECKPOINT_DIR).exists():
        raise UserError(
            f"{config.run_dir} holds another run; continue it with --resume {config.run_dir} or choose "
            "another --run-dir"
        )
    torch.manual_seed(config.seed)
    built = backbones.build(info, start, dropout=config.dropout, batch_norm=config.batch_norm)
    network = ClassifierNet(built.module, built.embedding_size, len(data.classes), config.dropout)
    network.to(device)
    network.to(memory_format=distributed.memory_format(config.channels_last))
    step = Step(
        device=device,
        precision=distributed.make_precision(device, config.amp),
        memory_format=distributed.memory_format(config.channels_last),
        dist=dist,
        progress=not config.quiet and dist.is_main,
    )
    workers = config.workers if config.workers is not None else default_workers(dist.world_size)
    return RunContext(config, info, built, network, data, prep, step, workers)


def _resolved(config: FitConfig, prep: Preprocessing, dist: DistInfo, data: TrainingData) -> FitConfig:
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
            "hflip": _hflip(config, data),
        }
    )


def _hflip(config: FitConfig, data: TrainingData) -> bool:
    """``--hflip`` as given; by default on, except for digits and text (``training.data.hints``), said in the log."""
    if config.hflip is not None:
        return config.hflip
    if looks_like_text(data.classes):
        if config.augment != "none":
            logger.info(HFLIP_OFF)
        return False
    return True


HFLIP_OFF = (
    "no horizontal flips: every class name is a single character or a number, so the images look like digits or "
    "text, which mirrored are other (or no) characters; pass --hflip to flip them anyway"
)

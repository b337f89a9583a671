"""A fit run as data: what the trainer, the evaluation, the export and the report share (``RunContext``, built
once by ``prepare_run``), and what training produced (``TrainingOutcome``, returned by the trainer).

``prepare_run`` checks everything that can be checked before training, cheapest first: the backbone name and its
weights (file lookups, seconds), the data (every image decoded once), the resume fingerprint and the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from modelspec.network import ClassifierNet
from modelspec.spec import Preprocessing
from training import backbones, checkpoint, distributed
from training.config import FitConfig
from training.data import TrainingData, default_workers, load_training_data
from training.distributed import DistInfo, Precision
from training.errors import DataError, UserError
from training.loop import Step

if TYPE_CHECKING:
    from training.features import Features


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


@dataclass(frozen=True)
class TrainingOutcome:
    """What the trainer hands back: the network with its best epoch's weights, and how it got there."""

    network: ClassifierNet
    best_epoch: int
    epochs: int  # epochs trained, over all phases
    history: list[dict[str, Any]]  # one row per epoch (history.csv)
    parameters: dict[str, list[int]]  # phase name -> [trainable, total]
    feature_cache: str = ""  # whether frozen phases trained on cached features, and if not why (for the report)
    # The cached embeddings, when every phase trained on them: the backbone is then the one that computed them.
    features: Features | None = None

    @property
    def images_per_second(self) -> float | None:
        """Mean training throughput per process, or None before the first epoch."""
        if not self.history:
            return None
        return float(sum(row["images_per_second"] for row in self.history)) / len(self.history)


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
    config = _resolved(config, prep, dist)
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

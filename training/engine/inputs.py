"""What each phase trains on: the run's images (augmented for training, as the service reads them for validation),
or, when a phase freezes the whole backbone and nothing augments the images, the backbone's cached embeddings
(``training.engine.features``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from training.data.datasets import ImageDataset, eval_dataset
from training.data.loaders import make_loader
from training.data.transforms import train_transform
from training.engine.features import FeatureDataset, Features, HeadNet, caching_off_reason, load_or_compute
from training.engine.loop import Batches, Step
from training.engine.run import RunContext
from training.engine.transfer import Phase, plan_phases


@dataclass(frozen=True)
class PhaseInputs:
    """What a phase trains and on what: the whole network on images, or (frozen backbone, cached features) its
    head on the backbone's embeddings."""

    module: nn.Module  # called as module(batch) -> (logits, embedding)
    train_loader: Batches
    val_loader: Batches
    step: Step
    cached: bool


class RunInputs:
    """The run's image loaders, built once, and its cached embeddings, computed at the first phase that uses them."""

    def __init__(self, context: RunContext) -> None:
        self.context = context
        config, prep, data, dist = context.config, context.prep, context.data, context.dist
        self.pin = context.device.type == "cuda"
        augment = train_transform(prep, config.augment, hflip=config.flips)
        train_set = ImageDataset(data.train, augment, draft_size=prep.resize_size)
        self.balance_labels = [label for _, label in data.train] if config.balanced_sampling else None
        self.train_loader = self._train_loader(train_set, context.workers)
        val_shard = data.val[dist.rank :: dist.world_size]  # each process scores its share; the sums are reduced
        self.val_loader = make_loader(
            eval_dataset(val_shard, prep),
            batch_size=config.batch_size,
            train=False,
            seed=config.seed,
            workers=context.workers,
            pin_memory=self.pin,
        )
        self.caching_off = caching_off_reason(config)
        self.features: Features | None = None

    def _train_loader(self, dataset: torch.utils.data.Dataset[tuple[torch.Tensor, int]], workers: int) -> Batches:
        config, dist = self.context.config, self.context.dist
        return make_loader(
            dataset,
            batch_size=config.batch_size,
            train=True,
            seed=config.seed,
            workers=workers,
            rank=dist.rank,
            world_size=dist.world_size,
            pin_memory=self.pin,
            balance_labels=self.balance_labels,
        )

    def for_phase(self, phase: Phase) -> PhaseInputs:
        """The network on images, or, when the phase freezes the whole backbone and nothing augments the images,
        its head on cached embeddings (computed at the first such phase, read back on resume)."""
        context = self.context
        if phase.trainable_stages != 0 or self.caching_off is not None:
            return PhaseInputs(context.network, self.train_loader, self.val_loader, context.step, cached=False)
        if self.features is None:
            self.features = load_or_compute(context)
        features, dist = self.features, context.dist
        train_loader = self._train_loader(FeatureDataset(features.train, features.train_labels), workers=0)
        shard = slice(dist.rank, None, dist.world_size)
        val = FeatureDataset(features.val[shard], features.val_labels[shard])
        val_loader = make_loader(val, batch_size=context.config.batch_size, train=False, seed=0, workers=0)
        step = dataclasses.replace(context.step, memory_format=torch.contiguous_format)  # embeddings are 2-d
        return PhaseInputs(HeadNet(context.network), train_loader, val_loader, step, cached=True)

    def feature_cache_note(self) -> str:
        """One sentence for the report: were cached features used, and if not, why."""
        frozen = any(phase.trainable_stages == 0 for phase in plan_phases(self.context.config))
        if not frozen:
            return "not used: every phase trains the backbone, whose outputs change with each step"
        if self.caching_off is not None:
            return f"off: {self.caching_off}"
        if self.features is None:
            return "on, but no frozen phase ran in this session"
        features = self.features
        return (
            f"on: the frozen backbone's embeddings of {len(features.train)} training and {len(features.val)} "
            f"validation images were computed once ({features.seconds:.1f} s) and cached in {features.path}; the "
            "head trained on them"
        )

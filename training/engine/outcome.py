"""What training produced (``TrainingOutcome``, returned by ``training.engine.trainer.Trainer.run``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelspec.network import ClassifierNet
from training.engine.features import Features


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

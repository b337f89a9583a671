"""Unbalanced classes: how unbalanced they are, inverse-frequency loss weights, and a sampler that draws every
class equally often."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

IMBALANCE_WARNING_RATIO = 3.0  # the report warns when the largest class has more than this many times the smallest


def class_weights(counts: Sequence[int]) -> torch.Tensor:
    """Inverse-frequency loss weights, ``n / (k * n_c)`` (scikit-learn's "balanced"): every class contributes the
    same total weight to the loss, and a balanced set gets weights of 1."""
    totals = torch.tensor(counts, dtype=torch.float32).clamp(min=1)
    return totals.sum() / (len(counts) * totals)


def imbalance_ratio(counts: Sequence[int]) -> float:
    """Images in the largest class over images in the smallest (1.0: balanced)."""
    present = [count for count in counts if count > 0]
    return max(present) / min(present) if present else 1.0


class BalancedSampler(Sampler[int]):
    """Draws every class equally often: each epoch, as many indices as there are samples, with replacement, each
    sample weighted by 1 / (its class's count). The draw comes from a generator seeded with (seed + epoch), as
    ``DistributedSampler``'s shuffle does, so an epoch's draw depends on nothing else (a resumed run draws what it
    would have); with several processes each takes every ``num_replicas``-th index of the same draw."""

    def __init__(self, labels: Sequence[int], *, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        counts = Counter(labels)
        self.weights = torch.tensor([1.0 / counts[label] for label in labels], dtype=torch.float64)
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, seed, 0
        self.num_samples = math.ceil(len(labels) / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        total = self.num_samples * self.num_replicas
        drawn = torch.multinomial(self.weights, total, replacement=True, generator=generator).tolist()
        return iter(drawn[self.rank : total : self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples

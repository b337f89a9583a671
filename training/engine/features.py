"""Cached features for frozen training.

When the backbone is frozen (``feature-extractor``, the head phase of ``two-phase``) and the training images are
not augmented, every epoch feeds the same images through the same fixed function. The embeddings are then computed
once, batched, through the same network in eval mode and with the same decoding and preprocessing, and the
classifier trains on them (as the Keras transfer-learning guide does): an epoch costs milliseconds instead of a
forward pass over every image. Dropout before the classifier still applies (``HeadNet``), so the head sees what it
would have seen; the network that is exported is the whole ``ClassifierNet`` as always.

The cache is a safetensors file in the run folder (``features/<key>.safetensors``). Its key covers the data (the
folders' fingerprint and the split), the architecture, the backbone's weights (a hash of its tensors), the
preprocessing and the precision; a file with another key is recomputed, so a stale cache is never read. It is
written beside its final name and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from modelspec.files import write_atomically
from modelspec.network import ClassifierNet
from training.config import FitConfig
from training.data.datasets import ImageDataset, eval_dataset
from training.data.folders import Sample
from training.data.transforms import EvalTransform
from training.engine import distributed
from training.engine.loop import Step
from training.engine.run import RunContext

logger = logging.getLogger(__name__)

FEATURES_DIR = "features"  # in the run folder


class HeadNet(nn.Module):
    """The part of a ``ClassifierNet`` after the backbone, on embeddings: ``(logits, embedding)`` like the network.

    It shares the network's dropout and classifier modules, so training it trains the network's own head."""

    def __init__(self, network: ClassifierNet) -> None:
        super().__init__()
        self.dropout = network.dropout
        self.classifier = network.classifier

    def forward(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.classifier(self.dropout(embedding)), embedding


@dataclass(frozen=True)
class Features:
    """The frozen backbone's embeddings of the training and validation images, with their labels."""

    train: torch.Tensor  # (images, embedding size), float32
    train_labels: torch.Tensor  # int64
    val: torch.Tensor
    val_labels: torch.Tensor
    path: Path
    seconds: float  # what computing them took (recorded in the file, so also when read back)


class FeatureDataset(Dataset[tuple[torch.Tensor, int]]):
    """(embedding, label) pairs, indexed like the images they came from."""

    def __init__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        self.embeddings = embeddings
        self.labels = labels.tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.embeddings[index], self.labels[index]


def caching_off_reason(config: FitConfig) -> str | None:
    """None when frozen phases can train on cached features, else why not, in words for the report."""
    if not config.cache_features:
        return "turned off with --no-cache-features"
    mixing = [f"--{name} {value:g}" for name, value in (("mixup", config.mixup), ("cutmix", config.cutmix)) if value]
    if config.augment != "none" or mixing:
        what = " and ".join([f"--augment {config.augment}"] * (config.augment != "none") + mixing)
        return (
            f"{what} changes the training images every epoch, so the frozen backbone's outputs differ from epoch to "
            "epoch and cannot be computed once; with --augment none (and no mixup/cutmix) they are cached and an "
            "epoch takes a fraction of a second"
        )
    return None


def weights_digest(module: nn.Module) -> str:
    """sha256 of a module's tensors (names, dtypes, shapes, bytes): the identity of the weights it computes with."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}\n".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def feature_key(context: RunContext) -> str:
    """What the cached embeddings depend on, hashed: data and split, architecture, weights, preprocessing."""
    data = context.data
    parts = {
        "data": data.fingerprint,
        "train": hashlib.sha256("\n".join(f"{p}\t{y}" for p, y in data.train).encode()).hexdigest(),
        "val": hashlib.sha256("\n".join(f"{p}\t{y}" for p, y in data.val).encode()).hexdigest(),
        "architecture": context.built.architecture.model_dump(mode="json"),
        "weights": weights_digest(context.network.backbone),
        "preprocessing": context.prep.model_dump(mode="json"),
        "precision": context.precision.label,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@torch.no_grad()
def embed(backbone: nn.Module, dataset: Dataset[tuple[torch.Tensor, int]], *, batch_size: int, workers: int,
          step: Step) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The backbone's pooled embedding of every image of ``dataset`` (eval mode, batched, in order) and its labels."""
    was_training = backbone.training
    backbone.eval()
    loader: DataLoader[tuple[torch.Tensor, int]] = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    outputs, labels = [], []
    # The loader draws a seed from torch's generator: fork it, so that computing the features (or not, when they
    # are cached) leaves the run's random numbers, and so its dropout masks and shuffles, as they were.
    with torch.random.fork_rng(devices=[]):
        try:
            for images, targets in loader:
                images = images.to(step.device, memory_format=step.memory_format)
                with step.precision.autocast():
                    embedding = torch.flatten(backbone(images), 1)
                outputs.append(embedding.float().cpu())
                labels.append(targets)
        finally:
            backbone.train(was_training)
    return torch.cat(outputs), torch.cat(labels).long()


def training_images(samples: list[Sample], context: RunContext) -> ImageDataset:
    """The training images as the uncached path reads them without augmentation: draft decoding, then the
    evaluation transform (``train_transform(prep, "none")``)."""
    return ImageDataset(samples, EvalTransform(context.prep), draft_size=context.prep.resize_size)


def load_or_compute(context: RunContext) -> Features:
    """The cached embeddings of the run's training and validation images: read back when the key matches, else
    computed (by rank 0 in a multi-process job, the others wait and read the file) and saved."""
    key = feature_key(context)
    path = context.run_dir / FEATURES_DIR / f"{key[:16]}.safetensors"
    if context.dist.is_main and _read_metadata(path).get("key") != key:
        _compute(context, path, key)
    distributed.barrier(context.dist)
    tensors = _read(path)
    seconds = float(_read_metadata(path).get("seconds", "0"))
    return Features(tensors["train"], tensors["train_labels"], tensors["val"], tensors["val_labels"], path, seconds)


def _compute(context: RunContext, path: Path, key: str) -> None:
    start = time.perf_counter()
    config, data = context.config, context.data
    backbone = context.network.backbone
    batch = max(config.batch_size, 64)
    train, train_labels = embed(backbone, training_images(data.train, context), batch_size=batch,
                                workers=context.workers, step=context.step)  # fmt: skip
    val, val_labels = embed(backbone, eval_dataset(data.val, context.prep), batch_size=batch,
                            workers=context.workers, step=context.step)  # fmt: skip
    seconds = time.perf_counter() - start
    tensors = {"train": train, "train_labels": train_labels, "val": val, "val_labels": val_labels}
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"key": key, "seconds": f"{seconds:.3f}"}
    contiguous = {k: v.contiguous() for k, v in tensors.items()}
    write_atomically(path, lambda temporary: save_file(contiguous, str(temporary), metadata=metadata))
    logger.info(
        "frozen features of %d training and %d validation images computed in %.1f s and cached in %s",
        len(train),
        len(val),
        seconds,
        path,
    )


def _read_metadata(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (OSError, ValueError):  # a damaged file is recomputed
        return {}


def _read(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (safe_open has no __iter__)

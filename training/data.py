"""Image folders: scanning and checking them, splitting, fingerprinting, and the datasets training reads.

Evaluation data goes through ``modelspec.preprocess`` (the function the service uses) so that validation numbers
are the numbers the service will reproduce; training augmentation ends in the same normalisation.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from modelspec.decode import DEFAULT_MAX_PIXELS, DecodeLimits, decode_file
from modelspec.preprocess import normalize, preprocess, resized_size
from modelspec.spec import Preprocessing
from training.config import AugmentPreset, FitConfig
from training.errors import DataError
from training.loop import BatchMix

logger = logging.getLogger(__name__)

Sample = tuple[Path, int]
ImageTransform = Callable[[Image.Image], torch.Tensor]
IMBALANCE_WARNING_RATIO = 3.0  # the report warns when the largest class has more than this many times the smallest


@dataclass(frozen=True)
class ImageFolder:
    """The readable images of an ImageFolder tree (``root/<class>/<image>``) and the files that were skipped."""

    root: Path
    classes: tuple[str, ...]
    samples: tuple[Sample, ...]
    skipped: tuple[tuple[Path, str], ...] = field(default=())

    def counts(self) -> list[int]:
        """Images per class, in class order."""
        found = Counter(label for _, label in self.samples)
        return [found[index] for index in range(len(self.classes))]


def scan_image_folder(root: Path, classes: Sequence[str] | None = None) -> ImageFolder:
    """Index ``root`` and check that every image decodes; unreadable files are skipped and counted.

    ``classes`` (the training classes) makes this a validation/test folder: its class folders must be among them
    and keep their indices. Raises ``DataError`` for a missing folder, no class folders, an empty class, or (for a
    training folder) a single class, so the problem shows before any training starts.
    """
    found = _class_folders(root)
    if classes is None:
        if len(found) == 1:
            raise DataError(f"{root} has a single class folder ({found[0]!r}); a classifier needs two or more")
        classes = found
    else:
        _check_known_classes(root, found, classes)
    index = {name: i for i, name in enumerate(classes)}
    candidates = [(path, index[name]) for name in found for path in _files_under(root / name)]
    problems = _check_images([path for path, _ in candidates])
    samples = tuple(sample for sample, problem in zip(candidates, problems, strict=True) if not problem)
    skipped = tuple((sample[0], problem) for sample, problem in zip(candidates, problems, strict=True) if problem)
    for path, problem in skipped[:10]:
        logger.warning("skipping unreadable file %s (%s)", path, problem)
    if len(skipped) > 10:
        logger.warning("... and %d more unreadable files", len(skipped) - 10)
    folder = ImageFolder(root=root, classes=tuple(classes), samples=samples, skipped=skipped)
    empty = [name for name in found if folder.counts()[index[name]] == 0]
    if empty:
        unreadable = f" ({len(skipped)} unreadable files skipped)" if skipped else ""
        raise DataError(
            f"class folder(s) with no readable images in {root}: {', '.join(empty)}{unreadable}; "
            "add images or remove the folder"
        )
    return folder


def _class_folders(root: Path) -> list[str]:
    if not root.exists():
        raise DataError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; expected an ImageFolder tree <root>/<class>/<image>")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError(f"{root} has no class folders; expected an ImageFolder tree <root>/<class>/<image>")
    return found


def _check_known_classes(root: Path, found: Sequence[str], classes: Sequence[str]) -> None:
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{root} has class folders the model does not know: {', '.join(unknown)}")
    missing = sorted(set(classes) - set(found))
    if missing:
        logger.warning("%s has no folder for class(es) %s", root, ", ".join(missing))


def _files_under(folder: Path) -> list[Path]:
    """Every non-hidden file below ``folder``, in a stable order (sub-folders included, as torchvision does)."""
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath) / name for name in sorted(filenames) if not name.startswith("."))
    return files


def _check_image(path: Path) -> str:
    """'' if ``path`` decodes as an image, else why not. JPEGs decode at 1/8 scale: truncation still shows."""
    try:
        with Image.open(path) as image:
            image.draft(None, (1, 1))
            image.load()
    except Exception as exc:  # Pillow raises many types for bad files (OSError, SyntaxError, ValueError, ...)
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return ""


def _check_images(paths: Sequence[Path]) -> list[str]:
    # Decoding releases the GIL, so threads use every core.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(_check_image, paths, chunksize=64))


def fingerprint(folders: Sequence[ImageFolder]) -> str:
    """sha256 of the class names and each image's relative path and size: changes when the data does."""
    digest = hashlib.sha256()
    for number, folder in enumerate(folders):
        digest.update(f"folder {number}: {'/'.join(folder.classes)}\n".encode())
        for path in sorted(path.relative_to(folder.root).as_posix() for path, _ in folder.samples):
            digest.update(f"{path}\t{(folder.root / path).stat().st_size}\n".encode())
    return "sha256:" + digest.hexdigest()


def stratified_split(samples: Sequence[Sample], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split each class by ``val_fraction`` with a seeded shuffle; every class with two or more images is in both."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[Sample]] = {}
    for sample in samples:
        by_class.setdefault(sample[1], []).append(sample)
    train: list[Sample] = []
    val: list[Sample] = []
    for label in sorted(by_class):
        items = by_class[label]
        order = rng.permutation(len(items))
        n_val = min(max(round(len(items) * val_fraction), 1), len(items) - 1) if len(items) >= 2 else 0
        val.extend(items[i] for i in order[:n_val])
        train.extend(items[i] for i in order[n_val:])
    return train, val


# The user's own files: Pillow's decompression-bomb check still applies, but not the service's per-request cap.
TRAINING_LIMITS = DecodeLimits(max_pixels=Image.MAX_IMAGE_PIXELS or DEFAULT_MAX_PIXELS, draft=True)
EVALUATION_LIMITS = DecodeLimits(max_pixels=TRAINING_LIMITS.max_pixels, draft=False)


def load_rgb(path: Path, draft_size: int | None = None) -> Image.Image:
    """Decode the way the service does (``modelspec.decode``).

    ``draft_size`` lets a JPEG decode at a reduced DCT scale whose sides stay at least that large (8x faster on
    phone photos): the service does so by default (``IMGCLF_DRAFT_DECODE``) with the resize size, and so do
    training and evaluation (``eval_dataset``); without it the image decodes at full scale.
    """
    limits = TRAINING_LIMITS if draft_size is not None else EVALUATION_LIMITS
    return decode_file(path, limits, draft_size=draft_size)


class EvalTransform:
    """``modelspec.preprocess`` as a torch transform: THE evaluation transform, shared with the service."""

    def __init__(self, prep: Preprocessing) -> None:
        self.prep = prep

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(preprocess(image, self.prep))


class ImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """(path, label) samples decoded with ``load_rgb`` and transformed to the network's input."""

    def __init__(self, samples: Sequence[Sample], transform: ImageTransform, draft_size: int | None = None) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.draft_size = draft_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        try:
            image = load_rgb(path, self.draft_size)
        except Exception as exc:  # checked at scan time; this only happens if the file changed since
            raise DataError(f"cannot read {path} any more ({exc}); was the data changed during training?") from exc
        return self.transform(image), label


def eval_dataset(samples: Sequence[Sample], prep: Preprocessing) -> ImageDataset:
    """The images as the service reads them with its default settings: ``modelspec.load_input``'s decoding (large
    JPEGs at reduced DCT scale, down to the resize size) and preprocessing."""
    return ImageDataset(samples, EvalTransform(prep), draft_size=prep.resize_size)


class LightAugment:
    """Resize as evaluation does, crop at a random place instead of the centre, maybe mirror, then normalise with
    ``modelspec``'s own arithmetic. PIL and numpy only: about half the cost of the same steps in torchvision."""

    def __init__(self, prep: Preprocessing, *, hflip: bool) -> None:
        self.prep = prep
        self.hflip = hflip

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(normalize(self.geometry(image), self.prep))

    def geometry(self, image: Image.Image) -> Image.Image:
        """The resized, randomly placed (and maybe mirrored) crop, still a PIL image."""
        prep = self.prep
        size = resized_size(image.width, image.height, prep.resize_size)
        if size != image.size:
            image = image.resize(size, Image.Resampling[prep.interpolation.upper()])
        # torch's generator, so that seeding, DataLoader workers and checkpoints cover it like any other draw
        left = int(torch.randint(0, image.width - prep.crop_size + 1, ()))
        top = int(torch.randint(0, image.height - prep.crop_size + 1, ()))
        image = image.crop((left, top, left + prep.crop_size, top + prep.crop_size))
        if self.hflip and torch.rand(()) < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image


class PolicyAugment(LightAugment):
    """``light``'s crop, then one of the automatic augmentation policies of torchvision v2 on the PIL image
    (TrivialAugment: one random operation at a random strength per image; RandAugment: two at strength 9), then
    ``modelspec``'s normalisation."""

    def __init__(self, prep: Preprocessing, policy: Literal["trivialaugment", "randaugment"], *, hflip: bool) -> None:
        super().__init__(prep, hflip=hflip)
        from torchvision.transforms import InterpolationMode, v2

        interpolation = InterpolationMode.BILINEAR
        self.policy: Callable[[Image.Image], Image.Image] = (
            v2.TrivialAugmentWide(interpolation=interpolation)
            if policy == "trivialaugment"
            else v2.RandAugment(num_ops=2, magnitude=9, interpolation=interpolation)
        )

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(normalize(self.policy(self.geometry(image)), self.prep))


def train_transform(prep: Preprocessing, preset: AugmentPreset, *, hflip: bool) -> ImageTransform:
    """Training augmentation, ending in the evaluation's normalisation.

    ``none`` is the evaluation transform itself. ``light`` resizes as evaluation does, then crops at a random
    place instead of the centre: objects keep their evaluation size and shift by a few pixels. ``standard`` is the
    Inception recipe: random crops of 25-100 % of the area at varied aspect ratios, resized to the input size, with
    colour jitter. ``trivialaugment`` and ``randaugment`` add torchvision's automatic policies to ``light``'s crop
    (rotations, shears, shifts, colour, contrast, sharpness, posterise, solarise, ...). ``hflip`` adds mirror images
    to all but ``none`` (right for photos, wrong for digits and text).
    """
    if preset == "none":
        return EvalTransform(prep)
    if preset == "light":
        return LightAugment(prep, hflip=hflip)
    if preset in ("trivialaugment", "randaugment"):
        return PolicyAugment(prep, preset, hflip=hflip)
    from torchvision.transforms import InterpolationMode, v2

    steps: list[Callable[..., object]] = [
        v2.RandomResizedCrop(prep.crop_size, scale=(0.25, 1.0), interpolation=InterpolationMode(prep.interpolation)),
        v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3),
    ]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(prep.mean), list(prep.std))]
    compose: ImageTransform = v2.Compose(steps)
    return compose


def batch_mix(mixup: float, cutmix: float, num_classes: int) -> BatchMix | None:
    """MixUp (Zhang et al. 2018) and/or CutMix (Yun et al. 2019) on whole batches, from torchvision v2; with both,
    each batch gets one of the two at random. None when both alphas are 0."""
    if not (mixup or cutmix):
        return None
    from torchvision.transforms import v2

    mixes: list[Callable[..., object]] = []
    if mixup:
        mixes.append(v2.MixUp(alpha=mixup, num_classes=num_classes))
    if cutmix:
        mixes.append(v2.CutMix(alpha=cutmix, num_classes=num_classes))
    chosen = mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)

    def mix(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mixed, targets = chosen(images, labels)  # type: ignore[misc]
        return mixed, targets

    return mix


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


def default_workers(world_size: int = 1) -> int:
    """Loader workers per process: none with two cores or fewer per process, where a worker only competes with the
    training maths for them (measured on 2 cores: 0 workers ran at 97 % of an in-memory loop's speed, 1 worker at
    88 %); else one per spare core, up to four."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_process = max(1, cores // max(1, world_size))
    return 0 if per_process <= 2 else min(4, per_process - 1)


def make_loader(
    dataset: Dataset[tuple[torch.Tensor, int]],
    *,
    batch_size: int,
    train: bool,
    seed: int,
    workers: int,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    balance_labels: Sequence[int] | None = None,
) -> DataLoader[tuple[torch.Tensor, int]]:
    """A loader whose order depends only on (seed, epoch): call ``loader.sampler.set_epoch`` every epoch.

    Training shards the data across processes (``DistributedSampler``, also with one process, which gives the
    same seeded order either way), or, given the samples' labels in ``balance_labels``, draws classes equally
    often (``BalancedSampler``); evaluation reads its whole dataset in order.
    """
    if train:
        sampler: Sampler[int] = (
            BalancedSampler(balance_labels, num_replicas=world_size, rank=rank, seed=seed)
            if balance_labels is not None
            else DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        )
        # Full batches only (BatchNorm needs more than one image); a small dataset keeps its one short batch.
        drop_last = len(sampler) >= batch_size  # type: ignore[arg-type]
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=workers,
            pin_memory=pin_memory,
            persistent_workers=False,
        )
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=pin_memory)


@dataclass(frozen=True)
class TrainingData:
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


def load_training_data(config: FitConfig) -> TrainingData:
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
    return TrainingData(folder.classes, train, val, source, test, skipped, fingerprint(folders))

"""Transforms: the evaluation transform (shared with the service) and the training augmentation presets, per
image (``train_transform``) and per batch (``batch_mix``: MixUp, CutMix)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from PIL import Image

from modelspec.preprocess import normalize, preprocess, resized_size
from modelspec.spec import Preprocessing
from training.config import AugmentPreset

ImageTransform = Callable[[Image.Image], torch.Tensor]
# A batch-level augmentation (MixUp, CutMix): (images, labels) -> (mixed images, soft targets whose rows sum to 1).
BatchMix = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class EvalTransform:
    """``modelspec.preprocess`` as a torch transform: THE evaluation transform, shared with the service."""

    def __init__(self, prep: Preprocessing) -> None:
        self.prep = prep

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(preprocess(image, self.prep))


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

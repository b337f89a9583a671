"""Shared fixtures: a tiny exported model (fast, for unit tests) and the real default model (integration)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelspec import Architecture, Bundle, ModelSpec, Preprocessing

TINY_LABELS = ["circle", "square", "triangle"]


@pytest.fixture(autouse=True, scope="session")
def _private_export_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Exports cache their ONNX graphs (``training.export_cache``) in a folder of this session, not in ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IMGCLF_CACHE_DIR", str(tmp_path_factory.mktemp("imgclf-cache")))
        yield


def tiny_spec(name: str = "tiny") -> ModelSpec:
    return ModelSpec(
        name=name,
        architecture=Architecture(family="lenet", name="lenet5"),
        num_classes=len(TINY_LABELS),
        labels=TINY_LABELS,
        preprocessing=Preprocessing(resize_size=36, crop_size=32),
        embedding_size=84,
    )


def export_tiny(models_dir: Path, name: str = "tiny", seed: int = 0) -> Bundle:
    """A LeNet-5 with seeded random weights, exported as a real bundle (safetensors + ONNX) in a second or two."""
    import torch

    from modelspec.network import build_network
    from training.export import export_bundle

    torch.manual_seed(seed)
    network = build_network(tiny_spec(name))
    return export_bundle(network, tiny_spec(name), models_dir)


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding one tiny bundle, ``tiny`` version 1. Treat it as read-only."""
    models_dir = tmp_path_factory.mktemp("tiny-models")
    export_tiny(models_dir)
    return models_dir


@pytest.fixture(scope="session")
def default_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding the real default model (EfficientNet-Lite0, ImageNet). Treat it as read-only."""
    from training.pretrained import export_pretrained

    models_dir = tmp_path_factory.mktemp("default-models")
    export_pretrained(models_dir)
    return models_dir


@pytest.fixture(scope="session")
def default_bundle(default_models_dir: Path) -> Bundle:
    from modelspec import read_bundle

    return read_bundle(default_models_dir / "efficientnet-lite0" / "1")


def encode(image: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def photo() -> Callable[[str], Image.Image]:
    """scikit-image's sample photos by name (``chelsea`` the cat, ``coffee`` the espresso), as RGB PIL images."""
    import skimage.data

    def load(name: str) -> Image.Image:
        return Image.fromarray(np.asarray(getattr(skimage.data, name)()))

    return load


@pytest.fixture(scope="session")
def digits_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's digits as an ImageFolder tree: ``train/`` (1,347) and ``test/`` (450), 32 px PNGs."""
    from tests.training.digits import make_digits_tree

    return make_digits_tree(tmp_path_factory.mktemp("digits") / "digits")


@pytest.fixture(scope="session")
def digits_bundle(digits_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A LeNet-5 fitted on the digits' ``train/`` through ``python -m training fit`` and exported: a real trained
    bundle (``digits`` version 1, labels ``0`` .. ``9``) for end-to-end tests on ``digits_data / "test"``."""
    from modelspec import read_bundle
    from tests.training.digits import fit_digits_bundle

    root = tmp_path_factory.mktemp("digits-fit")
    return read_bundle(fit_digits_bundle(digits_data, root / "models", root / "run"))

"""A small trained-like bundle with trust data, made as export makes one: ``modelspec.trust.build_trust`` on the
real outputs (ONNX Runtime, the service's preprocessing) of a tiny LeNet on drawn shapes.

The same weights are exported twice: ``shapes`` with trust data (calibration, conformal scores, a Mahalanobis OOD
reference) and ``plain`` without (as an older bundle or the embedded default), so the two can be compared.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from modelspec import Bundle, read_bundle
from modelspec.decode import load_input
from modelspec.runtime import build_session
from modelspec.trust import TRUST_FILE, TrustScorer, build_trust, save_tensors
from tests.conftest import TINY_LABELS, tiny_spec

TRUSTED = "shapes"
PLAIN = "plain"
VALIDATION_IMAGES = 60  # conformal levels served: 1/61 .. 60/61 (0.9836)
TRAINING_IMAGES = 150


def shape_png(label: int, rng: np.random.Generator, size: int = 40) -> bytes:
    """A grey picture of a circle (0), a square (1) or a triangle (2), placed and sized at random."""
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(90, 140, 3)))
    draw = ImageDraw.Draw(image)
    side = int(rng.integers(14, 30))
    x, y = (int(v) for v in rng.integers(0, size - side, 2))
    fill = tuple(int(v) for v in rng.integers(180, 255, 3))
    if label == 0:
        draw.ellipse((x, y, x + side, y + side), fill=fill)
    elif label == 1:
        draw.rectangle((x, y, x + side, y + side), fill=fill)
    else:
        draw.polygon([(x, y + side), (x + side, y + side), (x + side // 2, y)], fill=fill)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def noise_png(seed: int, size: int = 40) -> bytes:
    """Coloured noise: nothing like the shapes."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def run_bundle(bundle: Bundle, images: list[bytes]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Logits and embeddings of encoded images, preprocessed and run as the service does."""
    batch = np.stack([load_input(data, bundle.spec.preprocessing) for data in images])
    logits, embeddings = build_session(bundle.file("model.onnx"), threads=1).run(None, {"images": batch})
    return np.asarray(logits, np.float32), np.asarray(embeddings, np.float32)


@dataclass(frozen=True)
class TrustedModels:
    models_dir: Path
    trusted: Bundle
    plain: Bundle
    validation: list[bytes]
    """The validation images the trust data was fitted on (a served score can be checked against them)."""
    validation_labels: list[int]

    def scorer(self) -> TrustScorer:
        """The scorer export fitted, read back from the bundle as written."""
        return TrustScorer.from_bundle(self.trusted)


def make_trusted_models(models_dir: Path) -> TrustedModels:
    """Export ``plain`` (a seeded LeNet), compute its real outputs on drawn shapes, and export the same weights as
    ``shapes`` with the trust data fitted on them. Labels: the model's own top-1 with a third of them changed, so
    that it is right about two thirds of the time and its probabilities need calibrating."""
    import torch

    from modelspec.network import build_network
    from training.export import export_bundle

    torch.manual_seed(0)
    network = build_network(tiny_spec(PLAIN))
    plain = export_bundle(network, tiny_spec(PLAIN), models_dir)
    rng = np.random.default_rng(0)
    drawn = rng.integers(0, len(TINY_LABELS), VALIDATION_IMAGES + TRAINING_IMAGES)
    images = [shape_png(int(label), rng) for label in drawn]
    logits, embeddings = run_bundle(plain, images)
    labels = logits.argmax(axis=1)
    changed = rng.random(len(labels)) < 1 / 3
    labels[changed] = (labels[changed] + rng.integers(1, len(TINY_LABELS), changed.sum())) % len(TINY_LABELS)
    val = slice(0, VALIDATION_IMAGES)
    train = slice(VALIDATION_IMAGES, None)
    trust, tensors = build_trust(logits[val], labels[val], embeddings[val], embeddings[train], labels[train])
    spec = tiny_spec(TRUSTED).model_copy(update={"trust": trust})
    trusted = export_bundle(
        network, spec, models_dir, extra_files={TRUST_FILE: lambda path: save_tensors(path, tensors)}
    )
    return TrustedModels(
        models_dir=models_dir,
        trusted=read_bundle(trusted.path),
        plain=read_bundle(plain.path),
        validation=images[val],
        validation_labels=[int(label) for label in labels[val]],
    )

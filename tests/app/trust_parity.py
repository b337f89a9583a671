"""Helpers of the trust parity test (``test_trust_parity.py``): what training computed for a fitted bundle's images,
and what the service's own inputs give through ``modelspec.trust``.

Training's side is recomputed exactly as ``training.scoring`` and ``training.trust`` compute it at export: the
validation split rebuilt from the bundle's recorded hyperparameters (same folder, fraction and seed), the bundle's
network from its safetensors, ``training.data.datasets.eval_dataset`` and ``training.engine.loop.predict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from modelspec import Bundle, load_input, tensors
from modelspec.runtime import build_session
from modelspec.trust import TrustResult, TrustScorer

COVERAGE = 0.9
PROB_TOLERANCE = 1e-5
OOD_RELATIVE_TOLERANCE = 1e-5  # Mahalanobis distances are squared, of size ~100: float32 sums differ in the 5th digit


@dataclass(frozen=True)
class Outputs:
    """A network's outputs on a list of image files, in order."""

    files: list[Path]
    labels: npt.NDArray[np.int64]  # -1 for images of no class (the OOD probes)
    logits: npt.NDArray[np.float32]
    embeddings: npt.NDArray[np.float32]

    def trust(self, bundle: Bundle, coverage: float | None = COVERAGE) -> TrustResult:
        return TrustScorer.from_bundle(bundle)(self.logits, self.embeddings, coverage)


def split(bundle: Bundle) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """The training and validation samples the bundle was fitted and calibrated on, rebuilt as ``fit`` built them."""
    from training.data.folders import scan_image_folder
    from training.data.splits import stratified_split

    hyper = bundle.spec.hyperparameters
    assert hyper["val_data"] is None, "the parity fixture fits with a stratified validation split"
    folder = scan_image_folder(Path(hyper["data"]))
    return stratified_split(folder.samples, hyper["val_fraction"], hyper["seed"])


def probe_images(folder: Path) -> list[Path]:
    """Images of no digit class: noise, a flat grey, stripes (the far out-of-distribution case)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pictures = {
        "noise.png": rng.integers(0, 256, (40, 40, 3), dtype=np.uint8),
        "grey.png": np.full((32, 32, 3), 128, dtype=np.uint8),
        "stripes.png": np.tile(((np.arange(48) // 4) % 2 * 255).astype(np.uint8)[None, :, None], (48, 1, 3)),
        "colour.png": np.stack([np.linspace(0, 255, 36 * 36).reshape(36, 36)] * 3, axis=2).astype(np.uint8),
    }
    paths = []
    for name, pixels in pictures.items():
        Image.fromarray(pixels).save(folder / name)
        paths.append(folder / name)
    return paths


def training_outputs(bundle: Bundle, samples: list[tuple[Path, int]]) -> Outputs:
    """Logits and embeddings as training computes them at export (torch network, training's eval dataset)."""
    import torch

    from modelspec.network import load_network
    from training.data.datasets import eval_dataset
    from training.data.loaders import make_loader
    from training.engine.distributed import Precision
    from training.engine.loop import Step, predict

    loader = make_loader(
        eval_dataset([(p, max(y, 0)) for p, y in samples], bundle.spec.preprocessing),
        batch_size=64,
        train=False,
        seed=0,
        workers=0,
    )
    step = Step(device=torch.device("cpu"), precision=Precision("cpu"), progress=False)
    found = predict(load_network(bundle), loader, step)
    labels = np.array([y for _, y in samples], dtype=np.int64)
    return Outputs([p for p, _ in samples], labels, found.logits, found.embeddings)


def service_outputs(bundle: Bundle, outputs: Outputs) -> Outputs:
    """The same files as the service feeds them to its default backend: ``modelspec.load_input`` + ONNX Runtime."""
    session = build_session(bundle.file("model.onnx"))
    batch = np.stack([load_input(path.read_bytes(), bundle.spec.preprocessing) for path in outputs.files])
    logits, embeddings = session.run(list(tensors.OUTPUTS), {tensors.INPUT: batch})
    return Outputs(outputs.files, outputs.labels, logits, embeddings)


def set_labels(result: TrustResult, labels: list[str]) -> list[list[str]]:
    """Each image's prediction set, as label names in class order."""
    assert result.sets is not None
    return [[labels[i] for i in result.sets.indices(row)] for row in range(len(result.probs))]

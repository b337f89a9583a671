"""Export a trained network as a bundle: safetensors weights, an ONNX graph checked against torch, ``model.json``.

The ONNX graph has one input (``images``, NCHW float32, dynamic batch) and two outputs (``logits`` and
``embedding``). Its outputs are compared with the torch network's on a sample batch before the bundle is renamed
into the models folder, so a bundle that reaches the service always agrees with the network it came from.
"""

from __future__ import annotations

import contextlib
import io
import logging
import platform
import warnings
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from modelspec import tensors
from modelspec.bundle import ONNX_FILE, WEIGHTS_FILE, Bundle, FileWriter, write_bundle
from modelspec.diskspace import free_space, is_disk_full
from modelspec.network import ClassifierNet
from modelspec.runtime import build_session
from modelspec.spec import ModelSpec
from training import export_cache
from training.errors import UserError

logger = logging.getLogger(__name__)

ONNX_OPSET = 18


class ExportMismatchError(RuntimeError):
    """The ONNX graph does not reproduce the torch network's outputs."""


class DiskFullError(UserError):
    """The models folder's disk is full: a one-line error naming the path and the space a bundle needs."""

    def __init__(self, path: Path, needed: int) -> None:
        super().__init__(
            f"no space left on the disk of {path}: the bundle needs about {needed:,} bytes ({free_space(path)}) and "
            "nothing of it was kept; free some space (or choose --models-dir on another disk) and run again"
        )


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a bundle's numbers, for its provenance."""
    versions = {"python": platform.python_version()}
    for package in ("torch", "torchvision", "timm", "onnx", "onnxruntime", "numpy", "pillow"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return versions


def save_weights(network: torch.nn.Module, path: Path) -> None:
    """Write the state dict as safetensors (contiguous CPU copies; no pickle anywhere)."""
    state = {key: value.detach().to("cpu").contiguous().clone() for key, value in network.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt"})


def export_onnx(network: ClassifierNet, sample: torch.Tensor, path: Path) -> None:
    """Export with the torch.export-based exporter: dynamic batch size, two named outputs, weights inline."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    # The exporter reports progress on stdout and warns about things we do not use; keep library output quiet.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            (sample,),
            str(path),
            input_names=[tensors.INPUT],
            output_names=list(tensors.OUTPUTS),
            opset_version=ONNX_OPSET,
            dynamo=True,
            external_data=False,
            dynamic_shapes={"images": {0: batch}},  # keyed by ClassifierNet.forward's argument name
            verbose=False,
        )


def check_onnx(network: ClassifierNet, onnx_path: Path, sample: torch.Tensor, *, atol: float = 1e-4) -> float:
    """Run ``sample`` through torch and ONNX Runtime; raise ``ExportMismatchError`` if they differ.

    The tolerance is relative to the size of the outputs (logits of a few units, embeddings of any scale), and two
    batch sizes are checked so a batch dimension baked in as a constant cannot slip through.
    """
    session = build_session(onnx_path)
    worst = 0.0
    for batch in (sample[:1], sample):
        with torch.no_grad():
            expected = [t.numpy() for t in network(batch)]
        actual = session.run(list(tensors.OUTPUTS), {tensors.INPUT: batch.numpy()})
        for name, want, got in zip(tensors.OUTPUTS, expected, actual, strict=True):
            if want.shape != got.shape:
                raise ExportMismatchError(f"ONNX {name} has shape {got.shape}, torch gives {want.shape}")
            scale = max(1.0, float(np.abs(want).max()))
            error = float(np.abs(want - got).max()) / scale
            worst = max(worst, error)
            if error > atol:
                raise ExportMismatchError(
                    f"ONNX {name} differs from torch by {error:.2e} (relative; tolerance {atol:.0e}); "
                    "the exporter does not support some layer of this network"
                )
    return worst


def export_bundle(
    network: ClassifierNet,
    spec: ModelSpec,
    models_dir: Path,
    *,
    sample: torch.Tensor | None = None,
    version: int | None = None,
    extra_files: Mapping[str, FileWriter] | None = None,
) -> Bundle:
    """Write ``network`` and ``spec`` as a new bundle version under ``models_dir`` and return it.

    ``sample`` is a batch of preprocessed images (two or more) used to trace and check the export; random inputs
    of the spec's crop size are used when it is not given. ``extra_files`` (file name -> writer) adds files to the
    bundle: each writer is called with its file's path in the bundle's temporary folder, after the weights and the
    ONNX graph are written there, and its file is hashed like theirs.
    """
    network = network.to("cpu").eval()
    if sample is None:
        crop = spec.preprocessing.crop_size
        sample = torch.randn(2, 3, crop, crop, generator=torch.Generator().manual_seed(0))
    if sample.shape[0] < 2:
        sample = torch.cat([sample, sample.flip(-1)])
    provenance = spec.provenance.model_copy(update={"library_versions": library_versions()})
    spec = spec.model_copy(update={"provenance": provenance})

    def write_onnx(path: Path) -> None:
        if export_cache.load_cached(spec, network, sample, ONNX_OPSET, path):
            try:
                error = check_onnx(network, path, sample)
                logger.info("ONNX graph matches torch (max relative difference %.1e)", error)
                return
            except ExportMismatchError as exc:
                logger.warning("the cached ONNX graph does not match this network (%s): exporting afresh", exc)
        export_onnx(network, sample, path)
        error = check_onnx(network, path, sample)
        logger.info("ONNX export matches torch (max relative difference %.1e)", error)
        export_cache.store(spec, network, sample, ONNX_OPSET, path)

    try:
        return write_bundle(
            models_dir,
            spec,
            {WEIGHTS_FILE: lambda path: save_weights(network, path), ONNX_FILE: write_onnx, **(extra_files or {})},
            version=version,
        )
    except Exception as exc:  # the bundle's temporary folder is removed already: nothing half-written stays
        if not is_disk_full(exc):
            raise
        raise DiskFullError(models_dir / spec.name, estimated_bundle_bytes(network)) from None


def estimated_bundle_bytes(network: torch.nn.Module) -> int:
    """About what a bundle takes: the weights twice (safetensors and the ONNX graph), plus a little."""
    weights = sum(int(t.numel() * t.element_size()) for t in network.state_dict().values())
    return 2 * weights + 1024 * 1024

"""``python -m scripts.bench.trust``: calibration, conformal sets and OOD scores measured on Fashion-MNIST (six
classes known, four held out), digits and the sample photos; the kept OOD score's cost; writes "## Trust"."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from modelspec import list_versions
from scripts.bench import ROOT
from scripts.bench.machine import simd_flags, software, this_machine, uptime
from scripts.bench.report import publish
from scripts.bench.trust import data, measure
from scripts.bench.trust.data import HELD_OUT, KNOWN, Outputs
from scripts.bench.trust.section import Report, render

SOFTWARE = ("onnxruntime", "numpy", "safetensors", "torch")
NEAR = "near (held-out classes)"
KEPT_OOD = "Mahalanobis (256 dims)"  # the choice, made on this benchmark's numbers (see the section)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-trust", help="data, model (reused)")
    parser.add_argument("--per-class", type=int, default=600, help="Fashion-MNIST images per class and split")
    parser.add_argument("--val-share", type=float, default=1 / 3, help="of the training images, for validation")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--splits", type=int, default=20, help="random calibration/test splits (>= 5)")
    parser.add_argument("--cost-images", type=int, default=50_000, help="synthetic training set for the cost")
    parser.add_argument("--latency-rounds", type=int, default=500)
    parser.add_argument(
        "--default-model", type=Path, default=None, help="bundle timed for the latency ratio (default: Lite0's)"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="'-' prints instead")
    return parser.parse_args(argv)


def default_model(work: Path) -> Path:
    """The embedded ImageNet Lite0 (224 px, 1,000 classes): the model the latency ratio is about."""
    models = work / "models"
    if not list_versions(models, "efficientnet-lite0"):
        data.run([sys.executable, "-m", "training", "export-pretrained", "efficientnet_lite0",
                  "--models-dir", str(models), "--name", "efficientnet-lite0"])  # fmt: skip
    return models / "efficientnet-lite0" / str(list_versions(models, "efficientnet-lite0")[-1])


def join(*parts: Outputs) -> Outputs:
    return Outputs(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("logits", "embeddings", "labels")))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    log = logging.getLogger("bench-trust")
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    before, clock = uptime(), time.monotonic()
    args.work.mkdir(parents=True, exist_ok=True)
    source = data.prepare(args.work, args.per_class)
    folders = data.split_folders(source, args.work, args.val_share)
    bundle = data.train(args.work, folders, args.image_size, args.epochs)
    outputs = data.embed_all(bundle, args.work / "outputs.npz", source, folders)
    train, val, known = outputs["train"], outputs["val"], outputs["known"]
    cases = {NEAR: outputs["near"], "far: digits": outputs["digits"], "far: photos": outputs["photos"]}
    n_digits, n_photos = len(cases["far: digits"].labels), len(cases["far: photos"].labels)
    log.info("calibration, conformal, OOD")
    calibration = measure.calibration(val, known)
    calibration_images = len(val.labels)
    conformal = measure.conformal(join(val, known), calibration_images, args.splits)
    ood = measure.ood(train, val, known, cases)
    log.info("cost of each OOD score with a %d-image reference", args.cost_images)
    cost, scorer = measure.cost(args.cost_images, 1280, 1000, 300, measure.OOD_VARIANTS[KEPT_OOD])
    latency_model = args.default_model or default_model(args.work)
    latency = measure.latency(latency_model, scorer, args.latency_rounds)
    machine = this_machine()
    versions = ", ".join(f"{k} {v}" for k, v in software(SOFTWARE).items())
    report = Report(
        started=started,
        command="make bench-trust` (`python -m scripts.bench.trust",
        header=[
            f"Machine: {machine.cpu}, {machine.cores} cores, {machine.memory_gib:.0f} GiB; SIMD flags in "
            f"/proc/cpuinfo: {' '.join(simd_flags()) or 'none listed'}.",
            f"Load: `{before}` before, `{uptime()}` after; the whole run took {time.monotonic() - clock:.0f} s.",
            f"Software: {versions}.",
        ],
        setup=[
            f"Data: Fashion-MNIST (`python -m training prepare fashion-mnist --limit {args.per_class}`). Known "
            f"classes (labels 0-5): {', '.join(KNOWN)}; held out as near-OOD (labels 6-9): {', '.join(HELD_OUT)}. "
            f"Far-OOD: scikit-learn's {n_digits:,} 8x8 digits, and {n_photos} crops of scikit-image's sample "
            "photos.",
            f"Model: `{bundle.name}` version {bundle.version}, trained through the public CLI on the known classes: "
            f"`python -m training fit --data known/train --val-data known/val --mode feature-extractor --lr 1e-2 "
            f"--augment none --image-size {args.image_size} --epochs {args.epochs}` (frozen EfficientNet-Lite0 "
            f"features, a linear head); {len(train.labels):,} training, {len(val.labels):,} validation and "
            f"{len(known.labels):,} test images. Logits and embeddings ({train.embeddings.shape[1]} dims) come from "
            "the bundle's `model.onnx` through ONNX Runtime with `modelspec.preprocess`, as the service computes "
            "them.",
        ],
        calibration=calibration,
        conformal=conformal,
        splits=args.splits,
        calibration_images=calibration_images,
        ood=ood,
        near=NEAR,
        kept_ood=KEPT_OOD,
        cost=cost,
        cost_images=args.cost_images,
        latency=latency,
    )
    publish(render(report), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m training quantize BUNDLE``: add an int8 graph to an existing bundle.

The images come from the data the bundle was trained on (its recorded ``data``, ``val_data``, ``val_fraction`` and
``seed`` give back the same training/validation split) or from ``--data``; ``--unlabelled`` checks a model that has
no labelled data offline (the embedded ImageNet model) against offline photos instead. Nothing heavy is imported
until the command runs.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.errors import UserError

logger = logging.getLogger(__name__)


def add_quantize_parser(commands: Any) -> None:
    """Register the ``quantize`` subcommand on ``python -m training``'s subparsers."""
    parser = commands.add_parser(
        "quantize",
        help="add an int8 ONNX graph (model.int8.onnx) to a bundle, with its measured accuracy bound",
        description="ONNX Runtime static quantisation (QDQ) of a bundle's model.onnx, calibrated on its training "
        "images through its own preprocessing, checked against fp32 on its validation (and test) images. Writes "
        "model.int8.onnx when int8 is within the bound, and the record (top-1 of each, agreement, calibration) "
        "into model.json either way.",
    )
    parser.add_argument("bundle", help="models/<name>/<version>, or models/<name> for its latest version")
    parser.add_argument("--data", default=None, metavar="DIR", help="training ImageFolder (default: the recorded one)")
    parser.add_argument("--val-data", default=None, metavar="DIR", help="validation folder (default: as in training)")
    parser.add_argument("--test-data", default=None, metavar="DIR", help="also check on this folder")
    parser.add_argument(
        "--max-top1-drop", type=float, default=1.0, metavar="POINTS", help="top-1 points int8 may lose (default: 1.0)"
    )
    parser.add_argument(
        "--unlabelled",
        action="store_true",
        help="no labelled data (the ImageNet default): check top-1 agreement on offline photos instead",
    )
    parser.add_argument(
        "--min-agreement", type=float, default=0.97, help="--unlabelled: required agreement (default: 0.97)"
    )
    parser.add_argument("--calibration-images", type=int, default=256, help="(default: %(default)s)")
    parser.add_argument(
        "--search", action="store_true", help="try every calibration setting and keep the best (slower)"
    )
    parser.set_defaults(handler=run_quantize)


@dataclass(frozen=True)
class Splits:
    train: list[tuple[Path, int]]
    val: list[tuple[Path, int]]
    test: list[tuple[Path, int]] | None
    source: str


def recorded_splits(bundle_dir: Path, data: Path | None, val_data: Path | None, test_data: Path | None) -> Splits:
    """The training, validation and test images of a bundle: from the folders and split recorded at training (or
    the ones given), with the bundle's label indices. ``UserError`` naming the fix when there are none."""
    from modelspec.bundle import read_spec
    from training.data.folders import fingerprint, scan_image_folder
    from training.data.splits import stratified_split

    spec = read_spec(bundle_dir)
    recorded = spec.hyperparameters
    train_dir = data or _path(recorded.get("data"))
    if train_dir is None:
        raise UserError(
            f"{bundle_dir} records no training data: pass --data DIR (an ImageFolder tree of its classes), "
            "or --unlabelled to check an ImageNet model on offline photos"
        )
    if not train_dir.is_dir():
        raise UserError(f"the training data {train_dir} is not there: pass --data DIR")
    folder = scan_image_folder(train_dir, spec.labels)
    folders = [folder]
    val_dir = val_data or (None if data is not None else _path(recorded.get("val_data")))
    if val_dir is not None:
        val_folder = scan_image_folder(val_dir, spec.labels)
        folders.append(val_folder)
        train, val = list(folder.samples), list(val_folder.samples)
        source = f"training images of {train_dir}"
    else:
        fraction, seed = float(recorded.get("val_fraction", 0.2)), int(recorded.get("seed", 0))
        train, val = stratified_split(folder.samples, fraction, seed)
        source = f"the training part of a {fraction:.0%} split of {train_dir} (seed {seed})"
    if data is None and spec.provenance.dataset_fingerprint not in (None, fingerprint(folders)):
        logger.warning(
            "%s changed since the bundle was trained: its validation split differs from training's", train_dir
        )
    test_dir = test_data or (None if data is not None else _path(recorded.get("test_data")))
    test = None
    if test_dir is not None and test_dir.is_dir():
        test = list(scan_image_folder(test_dir, spec.labels).samples)
    if not val:
        raise UserError(f"{train_dir} is too small to split off validation images: pass --val-data DIR")
    return Splits(train, val, test, source)


def _path(value: object) -> Path | None:
    return Path(value) if isinstance(value, str) and value else None


def run_quantize(args: argparse.Namespace) -> int:
    from modelspec.bundle import BundleError
    from training.evaluate import open_bundle
    from training.quantize.core import quantize_bundle, quantize_unlabelled

    bundle = open_bundle(Path(args.bundle))
    try:
        if args.unlabelled:
            result = quantize_unlabelled(
                bundle.path,
                min_agreement=args.min_agreement,
                calibration_images=args.calibration_images,
                search=args.search,
            )
        else:
            splits = recorded_splits(bundle.path, _path(args.data), _path(args.val_data), _path(args.test_data))
            result = quantize_bundle(
                bundle.path,
                splits.train,
                splits.val,
                splits.test,
                max_top1_drop=args.max_top1_drop,
                calibration_images=args.calibration_images,
                calibration_source=splits.source,
                search=args.search,
            )
    except BundleError as exc:
        raise UserError(str(exc)) from exc
    record = result.record
    print(f"{bundle.name} v{bundle.version}: {record.reason}")  # noqa: T201
    for check in record.checks:
        line = f"  {check.split}: agreement {check.top1_agreement:.2%} on {check.images} images"
        if check.top1_fp32 is not None and check.top1_int8 is not None:
            line += f"; top-1 fp32 {check.top1_fp32:.2%}, int8 {check.top1_int8:.2%}"
        print(line)  # noqa: T201
    calibration = record.calibration
    print(  # noqa: T201
        f"  calibration: {calibration.method}, {'per-channel' if calibration.per_channel else 'per-tensor'}, "
        f"fp32 nodes: {', '.join(calibration.fp32_nodes) or 'none'}; {calibration.source}"
    )
    print(result.bundle.path / record.file if record.file else "int8 not kept: the bundle serves fp32")  # noqa: T201
    return 0

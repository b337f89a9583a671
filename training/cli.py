"""``python -m training <command>``: the training package's command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path


def _export_pretrained(args: argparse.Namespace) -> int:
    from training.pretrained import PretrainedWeightsUnavailableError, export_pretrained

    try:
        bundle = export_pretrained(Path(args.models_dir), args.backbone, args.name)
    except PretrainedWeightsUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {bundle.name} version {bundle.version} to {bundle.path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    export = commands.add_parser("export-pretrained", help="write an ImageNet bundle from offline pretrained weights")
    export.add_argument("backbone", nargs="?", default="efficientnet_lite0", help="(default: %(default)s)")
    export.add_argument("--models-dir", default="models", help="bundles folder (default: %(default)s)")
    export.add_argument("--name", default=None, help="model name (default: efficientnet-lite0)")
    export.set_defaults(handler=_export_pretrained)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Our own messages at INFO; third-party libraries (the ONNX optimiser is chatty) only from WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for package in ("training", "modelspec"):
        logging.getLogger(package).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    handler = args.handler
    result: int = handler(args)
    return result

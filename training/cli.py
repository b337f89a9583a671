"""``python -m training <command>``: prepare demo data, fit a model, evaluate a bundle, list the backbones.

User errors (bad flags, data or weights) print one line starting with ``error:`` and exit with status 2.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from training.errors import InterruptedTrainingError, UserError
from training.flags import add_fit_options
from training.quantize.command import add_quantize_parser

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


# --- commands -------------------------------------------------------------------------------------------------------


def _fit(args: argparse.Namespace) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from training.config import FIELDS, build_config, override_for_resume, read_config_file
    from training.engine.checkpoint import CHECKPOINT_DIR, load_checkpoint
    from training.fit import fit

    flags = {key: value for key, value in vars(args).items() if key in FIELDS}
    resume = None
    if args.resume is not None:
        if args.config is not None:
            raise UserError("--config and --resume do not mix: a resumed run keeps its own configuration")
        run_dir = Path(args.resume)
        resume = load_checkpoint(run_dir / CHECKPOINT_DIR)
        config = override_for_resume(resume.state["config"], flags).model_copy(update={"run_dir": run_dir})
    else:
        file_values = read_config_file(Path(args.config)) if args.config else {}
        config = build_config(file_values, flags)
    try:
        with logging_redirect_tqdm():
            result = fit(config, resume=resume)
    except InterruptedTrainingError as exc:
        print(f"{exc}; continue with: python -m training fit --resume {exc.run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.report:  # rank 0 only
        print(result.report)
        print(result.bundle.path if result.bundle else result.run_dir)
    return 0


def _find_lr(args: argparse.Namespace) -> int:
    from training.config import FIELDS, build_config, read_config_file
    from training.fit import find_lr
    from training.report import lr_finder_sentence

    flags = {key: value for key, value in vars(args).items() if key in FIELDS}
    file_values = read_config_file(Path(args.config)) if args.config else {}
    config = build_config(file_values, flags)
    result = find_lr(config, start_lr=args.start_lr, end_lr=args.end_lr, steps=args.steps)
    if result.plot is None:  # ranks other than 0
        return 0
    if result.mode_note:
        print(result.mode_note)
    test = result.test
    print(lr_finder_sentence({**test.summary(), "plot": str(result.plot)}))
    print(f"suggested learning rate: {test.suggestion:.3g}")
    print(f"use it: python -m training fit ... --lr {test.suggestion:.3g} (or let fit choose: --lr auto)")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from training.prepare import prepare_digits, prepare_fashion_mnist

    out = Path(args.out or f"data/{args.dataset}")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit}: give at least 1 image per class and split, or leave it out for all")
    if args.dataset == "fashion-mnist":
        counts = prepare_fashion_mnist(out, limit=args.limit, force=args.force, install=not args.no_install)
    else:
        counts = prepare_digits(out, size=args.size, limit=args.limit, force=args.force)
    print(f"{args.dataset}: " + ", ".join(f"{n} {split} images in {out / split}" for split, n in counts.items()))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate_bundle, open_bundle, trust_summary, write_evaluation
    from training.metrics import summary_line

    bundle = open_bundle(Path(args.bundle))
    evaluation = evaluate_bundle(
        bundle, Path(args.data), backend=args.backend, batch_size=args.batch_size, workers=args.workers
    )
    if args.output:
        write_evaluation(evaluation, Path(args.output))
    metrics = evaluation.metrics
    print(f"{bundle.name} v{bundle.version} on {args.data} ({args.backend}): {summary_line(metrics)}")
    if evaluation.skipped:
        print(f"{evaluation.skipped} unreadable files skipped")
    width = max(len(name) for name in metrics["per_class"])
    print(f"{'class':<{width}}  precision  recall     F1  images")
    for name, scores in metrics["per_class"].items():
        print(
            f"{name:<{width}}  {scores['precision']:9.3f}  {scores['recall']:6.3f}  {scores['f1']:5.3f}  "
            f"{scores['support']:6d}"
        )
    for line in trust_summary(metrics["trust"], metrics["samples"]):
        print(line)
    return 0


def _backbones(args: argparse.Namespace) -> int:
    from training.backbones import describe

    rows = describe()
    print(f"{'backbone':<20} {'family':<12} {'model':<22} {'size':>4}  pretrained weights offline")
    for row in rows:
        print(f"{row.name:<20} {row.family:<12} {row.model:<22} {row.image_size:>4}  {row.weights}")
    print(
        "\nAny timm or torchvision model also works as timm:<name> or torchvision:<name>. Pretrained weights are read "
        "from $TORCH_HOME/hub/checkpoints (default ~/.cache/torch/hub/checkpoints: copy the file named above there), "
        "the Hugging Face cache, or --weights PATH; nothing is downloaded."
    )
    return 0


def _export_pretrained(args: argparse.Namespace) -> int:
    from training.pretrained import export_pretrained

    bundle = export_pretrained(Path(args.models_dir), args.backbone, args.name, int8=args.int8)
    print(f"wrote {bundle.name} version {bundle.version} to {bundle.path}")
    return 0


# --- parsers --------------------------------------------------------------------------------------------------------


def _add_fit_parser(commands: Any) -> None:
    fit = commands.add_parser(
        "fit",
        help="fine-tune a backbone on an image folder and export a bundle",
        description="Fine-tune a backbone on an ImageFolder tree and export a bundle. Flags "
        "override --config (YAML, same names with - or _).",
    )
    fit.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue an interrupted run from its folder")
    fit.set_defaults(handler=_fit)
    add_fit_options(fit)


def _add_find_lr_parser(commands: Any) -> None:
    finder = commands.add_parser(
        "find-lr",
        help="the learning-rate range test: plot the loss against the learning rate, suggest one",
        description="The learning-rate range test (Smith 2015, fastai's lr_find) on the first phase of the run that "
        "`fit` with the same options would train: the learning rate grows exponentially over a few hundred steps, "
        "the smoothed loss is recorded until it diverges, the weights are restored. Writes lr_find.png and "
        "lr_find.json to the run folder and prints the suggestion.",
    )
    range_test = finder.add_argument_group("range test")
    range_test.add_argument("--start-lr", type=float, default=1e-7, help="(default: %(default)s)")
    range_test.add_argument("--end-lr", type=float, default=10.0, help="(default: %(default)s)")
    range_test.add_argument("--steps", type=int, default=200, help="at most this many steps (default: %(default)s)")
    finder.set_defaults(handler=_find_lr)
    add_fit_options(finder)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    prepare = commands.add_parser("prepare", help="write a demo dataset as an ImageFolder tree")
    prepare.add_argument("dataset", choices=["fashion-mnist", "digits"])
    prepare.add_argument("--out", default=None, help="output folder (default: data/<dataset>)")
    prepare.add_argument("--limit", type=int, default=None, help="at most N images per class and split")
    prepare.add_argument("--size", type=int, default=32, help="digits: image size in pixels (default: %(default)s)")
    prepare.add_argument("--force", action="store_true", help="replace an existing output folder")
    prepare.add_argument("--no-install", action="store_true", help="do not apt-get install dataset-fashion-mnist")
    prepare.set_defaults(handler=_prepare)

    _add_fit_parser(commands)
    _add_find_lr_parser(commands)

    evaluate = commands.add_parser("evaluate", help="score a bundle on an image folder")
    evaluate.add_argument("bundle", help="models/<name>/<version>, or models/<name> for its latest version")
    evaluate.add_argument("data", help="ImageFolder tree whose class folders are among the bundle's labels")
    evaluate.add_argument("--backend", choices=["onnx", "torch"], default="onnx", help="(default: %(default)s)")
    evaluate.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    evaluate.add_argument("--workers", type=int, default=0, help="DataLoader workers (default: %(default)s)")
    evaluate.add_argument("--output", default=None, help="folder for metrics.json and confusion.png")
    evaluate.set_defaults(handler=_evaluate)

    listing = commands.add_parser("backbones", help="list the backbones and whether their weights are offline")
    listing.set_defaults(handler=_backbones)

    export = commands.add_parser("export-pretrained", help="write an ImageNet bundle from offline pretrained weights")
    export.add_argument("backbone", nargs="?", default="efficientnet_lite0", help="(default: %(default)s)")
    export.add_argument("--models-dir", default="models", help="bundles folder (default: %(default)s)")
    export.add_argument("--name", default=None, help="model name (default: efficientnet-lite0)")
    export.add_argument(
        "--int8",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also quantise to int8, kept only if its top-1 agrees with fp32 on 97%% of offline photos (default: on)",
    )
    export.set_defaults(handler=_export_pretrained)
    add_quantize_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Our own messages at INFO (WARNING on the other ranks of a torchrun job); third-party libraries (the ONNX
    # optimiser is chatty) only from WARNING.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    level = logging.DEBUG if args.verbose else logging.INFO
    if int(os.environ.get("RANK", "0")) > 0:
        level = logging.WARNING
    for package in ("training", "modelspec"):
        logging.getLogger(package).setLevel(level)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # `... | head`: the reader left; say nothing more (as the Python docs advise)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def run() -> None:
    """The process entry point (``python -m training``, ``imgclf-train``): ``main``, then exit.

    Before exiting, the objects that exist are exempted from the garbage collections of interpreter shutdown, which
    take seconds once torch, torchvision and timm are imported (measured: 4-5 s, 0.9 s with this); the operating
    system frees the memory. Only here, not in ``main``, which tests call many times in one process."""
    code = main()
    gc.freeze()
    sys.exit(code)

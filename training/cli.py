"""``python -m training <command>``: prepare demo data, fit a model, evaluate a bundle, list the backbones.

User errors (bad flags, data or weights) print one line starting with ``error:`` and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from training.errors import InterruptedTrainingError, UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


# --- commands -------------------------------------------------------------------------------------------------------


def _fit(args: argparse.Namespace) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from training.checkpoint import CHECKPOINT_DIR, load_checkpoint
    from training.config import FIELDS, build_config, override_for_resume, read_config_file
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


def _prepare(args: argparse.Namespace) -> int:
    from training.prepare import prepare_digits, prepare_fashion_mnist

    out = Path(args.out or f"data/{args.dataset}")
    if args.dataset == "fashion-mnist":
        counts = prepare_fashion_mnist(out, limit=args.limit, force=args.force, install=not args.no_install)
    else:
        counts = prepare_digits(out, size=args.size, force=args.force)
    print(f"{args.dataset}: " + ", ".join(f"{n} {split} images in {out / split}" for split, n in counts.items()))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate_bundle, open_bundle, write_evaluation
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

    bundle = export_pretrained(Path(args.models_dir), args.backbone, args.name)
    print(f"wrote {bundle.name} version {bundle.version} to {bundle.path}")
    return 0


# --- parsers --------------------------------------------------------------------------------------------------------


def _flag_adder(group: argparse._ArgumentGroup) -> Callable[..., None]:
    """``add(flag, help, **kwargs)``: a fit option whose default (from ``FitConfig``) shows in the help.

    Defaults are not set on the parser (argparse.SUPPRESS) so that only the flags actually given override the
    config file.
    """
    from pydantic_core import PydanticUndefined

    from training.config import FitConfig

    def add(flag: str, help_text: str, **kwargs: Any) -> None:
        field = FitConfig.model_fields[flag.lstrip("-").replace("-", "_")]
        default = field.default
        shown = "" if default is PydanticUndefined or default is None else f" (default: {default})"
        group.add_argument(flag, help=help_text + shown, default=argparse.SUPPRESS, **kwargs)

    return add


def _add_fit_parser(commands: Any) -> None:
    from training.config import FitConfig

    choices = {
        name: list(get_args(field.annotation))
        for name, field in FitConfig.model_fields.items()
        if get_origin(field.annotation) is Literal
    }
    fit = commands.add_parser(
        "fit",
        help="fine-tune a backbone on an image folder and export a bundle",
        description="Fine-tune a backbone on an ImageFolder tree and export a bundle. Flags "
        "override --config (YAML, same names with - or _).",
    )
    fit.add_argument("--config", default=None, help="YAML file of fit options")
    fit.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue an interrupted run from its folder")
    fit.set_defaults(handler=_fit)
    boolean = argparse.BooleanOptionalAction

    add = _flag_adder(fit.add_argument_group("data"))
    add("--data", "ImageFolder tree: DIR/<class>/<image>", metavar="DIR", type=Path)
    add("--val-data", "validation folder (default: a stratified split of --data)", metavar="DIR", type=Path)
    add("--val-fraction", "share of --data held out for validation", type=float)
    add("--test-data", "held-out folder, scored once at the end", metavar="DIR", type=Path)
    add("--augment", "training augmentation preset", choices=choices["augment"])
    add("--hflip", "random horizontal flips with light/standard (off for digits, text)", action=boolean)
    add("--seed", "seed for the split, initialisation and shuffling", type=int)

    add = _flag_adder(fit.add_argument_group("network"))
    add("--backbone", "see `python -m training backbones`", metavar="NAME")
    add("--pretrained", "ImageNet weights: auto = when the backbone has them", choices=choices["pretrained"])
    add("--weights", "local backbone weights (safetensors or a torch state dict)", metavar="PATH", type=Path)
    add("--image-size", "input crop in pixels (default: the backbone's)", metavar="PX", type=int)
    add("--crop-pct", "crop / resize ratio (1.0: no border cropped; default: the backbone's)", type=float)
    add("--dropout", "dropout before the classifier", type=float)
    add("--batch-norm", "batch norm in LeNet-5; VGG's _bn variants", action=boolean)

    add = _flag_adder(fit.add_argument_group("transfer learning"))
    add("--mode", "what trains", choices=choices["mode"])
    add(
        "--unfreeze",
        "partial / two-phase: unfreeze the last N stages (partial default: 1; two-phase: all)",
        metavar="N",
        type=int,
    )
    add("--head-epochs", "two-phase: epochs that train the head only", metavar="K", type=int)
    add("--finetune-lr-scale", "two-phase: lr factor after unfreezing", type=float)
    add("--layer-decay", "discriminative lr: a stage d levels below the head gets lr * decay**d", type=float)

    add = _flag_adder(fit.add_argument_group("optimisation"))
    add("--optimizer", "", choices=choices["optimizer"])
    add("--lr", "base learning rate", type=float)
    add("--momentum", "sgd (default 0.9) and rmsprop (default 0)", type=float)
    add("--nesterov", "Nesterov momentum (sgd)", action=boolean)
    add("--weight-decay", "L2 (decoupled for adamw); not on biases and norms", type=float)
    add("--l1", "L1 penalty coefficient", type=float)
    add("--label-smoothing", "", type=float)
    add("--clip-grad-norm", "clip the gradient norm to this value", type=float)
    add("--schedule", "learning-rate schedule, per step", choices=choices["schedule"])
    add("--warmup-epochs", "linear warmup (may be fractional)", type=float)
    add("--lr-end", "linear/cosine: final lr (lr_tau; default lr / 100)", type=float)
    add("--decay-epochs", "linear/cosine: epochs until lr_end (tau; default: the whole phase)", type=float)
    add("--step-epochs", "step: epochs between decays", type=float)
    add("--gamma", "step: decay factor", type=float)

    add = _flag_adder(fit.add_argument_group("loop"))
    add("--epochs", "", metavar="N", type=int)
    add("--batch-size", "per process", type=int)
    add("--patience", "early stopping after N epochs without improvement", metavar="N", type=int)
    add("--monitor", "what early stopping and the best epoch go by", choices=choices["monitor"])
    add("--workers", "DataLoader worker processes (default: from the CPU count)", type=int)
    add("--device", "", choices=choices["device"])
    add("--amp", "mixed precision on CUDA", action=boolean)
    add("--channels-last", "channels-last memory format", action=boolean)

    add = _flag_adder(fit.add_argument_group("output"))
    add("--models-dir", "where bundles go", metavar="DIR", type=Path)
    add("--name", "model name (default: from the data folder)")
    add("--run-dir", "history, curves, checkpoints (default: runs/<name>-<time>)", metavar="DIR", type=Path)
    add("--export", "export a bundle at the end", action=boolean)
    add("--quiet", "no progress bars (for logs)", action=boolean)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    prepare = commands.add_parser("prepare", help="write a demo dataset as an ImageFolder tree")
    prepare.add_argument("dataset", choices=["fashion-mnist", "digits"])
    prepare.add_argument("--out", default=None, help="output folder (default: data/<dataset>)")
    prepare.add_argument("--limit", type=int, default=None, help="fashion-mnist: at most N images per class and split")
    prepare.add_argument("--size", type=int, default=32, help="digits: image size in pixels (default: %(default)s)")
    prepare.add_argument("--force", action="store_true", help="replace an existing output folder")
    prepare.add_argument("--no-install", action="store_true", help="do not apt-get install dataset-fashion-mnist")
    prepare.set_defaults(handler=_prepare)

    _add_fit_parser(commands)

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
    export.set_defaults(handler=_export_pretrained)
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

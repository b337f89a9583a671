"""The flags of ``fit`` and ``find-lr``: one per ``FitConfig`` field, grouped for the help, each taking its type,
choices and default from the field (so a new option is a field and a line here)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

# The fit options by help group: (flag, help) or (flag, help, metavar). Each one's type, choices and default come
# from its FitConfig field.
FIT_OPTIONS: dict[str, list[tuple[str, ...]]] = {
    "data": [
        ("--data", "ImageFolder tree: DIR/<class>/<image>", "DIR"),
        ("--val-data", "validation folder (default: a stratified split of --data)", "DIR"),
        ("--val-fraction", "share of --data held out for validation"),
        ("--test-data", "held-out folder, scored once at the end", "DIR"),
        ("--augment", "training augmentation preset"),
        ("--hflip", "random horizontal flips with the augmentation presets (off for digits, text)"),
        ("--mixup", "MixUp alpha, e.g. 0.2 (0: off); soft-target loss", "ALPHA"),
        ("--cutmix", "CutMix alpha, e.g. 1.0 (0: off); with --mixup each batch gets one of the two", "ALPHA"),
        ("--class-weights", "auto: weight the loss by inverse class frequency (unbalanced classes)"),
        ("--balanced-sampling", "draw every class equally often in each epoch (unbalanced classes)"),
        ("--seed", "seed for the split, initialisation and shuffling"),
    ],
    "network": [
        ("--backbone", "see `python -m training backbones`", "NAME"),
        ("--pretrained", "ImageNet weights: auto = when the backbone has them"),
        ("--weights", "local backbone weights (safetensors or a torch state dict)", "PATH"),
        ("--image-size", "input crop in pixels (default: the backbone's)", "PX"),
        ("--crop-pct", "crop / resize ratio (1.0: no border cropped; default: the backbone's)"),
        ("--dropout", "dropout before the classifier"),
        ("--batch-norm", "batch norm in LeNet-5; VGG's _bn variants"),
    ],
    "transfer learning": [
        ("--mode", "what trains; auto: chosen from images per class and a linear probe of the frozen features"),
        ("--unfreeze", "partial / two-phase: unfreeze the last N stages (partial default: 1; two-phase: all)", "N"),
        ("--head-epochs", "two-phase: epochs that train the head only", "K"),
        ("--finetune-lr-scale", "two-phase: lr factor after unfreezing"),
        ("--layer-decay", "discriminative lr: a stage d levels below the head gets lr * decay**d"),
    ],
    "optimisation": [
        ("--optimizer", ""),
        ("--lr", "base learning rate; auto: the learning-rate range test chooses it (see find-lr)"),
        ("--momentum", "sgd (default 0.9) and rmsprop (default 0)"),
        ("--nesterov", "Nesterov momentum (sgd)"),
        ("--weight-decay", "L2 (decoupled for adamw); not on biases and norms"),
        ("--l1", "L1 penalty coefficient"),
        ("--label-smoothing", ""),
        ("--clip-grad-norm", "clip the gradient norm to this value"),
        ("--schedule", "learning-rate schedule, per step"),
        ("--warmup-epochs", "linear warmup (may be fractional)"),
        ("--lr-end", "linear/cosine: final lr (lr_tau; default lr / 100)"),
        ("--decay-epochs", "linear/cosine: epochs until lr_end (tau; default: the whole phase)"),
        ("--step-epochs", "step: epochs between decays"),
        ("--gamma", "step: decay factor"),
    ],
    "loop": [
        ("--epochs", "", "N"),
        ("--batch-size", "per process"),
        ("--patience", "early stopping after N epochs without improvement", "N"),
        ("--monitor", "what early stopping and the best epoch go by"),
        ("--workers", "DataLoader worker processes (default: from the CPU count)"),
        ("--device", ""),
        ("--amp", "mixed precision on CUDA"),
        ("--channels-last", "channels-last memory format"),
        ("--cache-features", "frozen phases without augmentation train the head on cached backbone outputs"),
    ],
    "output": [
        ("--models-dir", "where bundles go", "DIR"),
        ("--name", "model name (default: from the data folder)"),
        ("--run-dir", "history, curves, checkpoints (default: runs/<name>-<time>)", "DIR"),
        ("--export", "export a bundle at the end"),
        ("--int8", "also write an int8 ONNX graph, kept when within --max-top1-drop of fp32 (--no-int8: skip)"),
        ("--max-top1-drop", "int8: top-1 points it may lose against fp32 on validation (and test)", "POINTS"),
        ("--tensorboard", "write TensorBoard event logs to RUN_DIR/tensorboard"),
        ("--quiet", "no progress bars (for logs)"),
    ],
}


def _add_fit_option(group: argparse._ArgumentGroup, flag: str, help_text: str, metavar: str | None) -> None:
    """A fit option whose type, choices and default come from ``FitConfig``; the default shows in the help.

    Defaults are not set on the parser (argparse.SUPPRESS) so that only the flags actually given override the
    config file.
    """
    from pydantic_core import PydanticUndefined

    from training.config import FitConfig

    field = FitConfig.model_fields[flag.lstrip("-").replace("-", "_")]
    default = field.default
    shown = "" if default is PydanticUndefined or default is None else f" (default: {default})"
    kind = _argument_kind(field.annotation)
    group.add_argument(flag, help=help_text + shown, default=argparse.SUPPRESS, metavar=metavar, **kind)


def _argument_kind(annotation: Any) -> dict[str, Any]:
    """argparse's ``type``, ``choices`` or ``action`` for a ``FitConfig`` field (``X | None`` counts as ``X``;
    ``number | Literal[words]`` takes either)."""
    if get_origin(annotation) in (Union, UnionType):
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
        if all(get_origin(option) is Literal for option in options):  # Literal[a, b] | Literal[c]
            return {"choices": [word for option in options for word in get_args(option)]}
        if len(options) > 1:
            return {"type": _word_or_number(options)}
        (annotation,) = options
    if get_origin(annotation) is Literal:
        return {"choices": list(get_args(annotation))}
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    return {} if annotation is str else {"type": annotation}


def _word_or_number(options: list[Any]) -> Callable[[str], str | float]:
    """A parser for ``float | Literal["auto"]`` and the like: one of the words, else a number."""
    words = [word for option in options if get_origin(option) is Literal for word in get_args(option)]
    numbers = [option for option in options if get_origin(option) is not Literal]
    kind = get_args(numbers[0])[0] if get_origin(numbers[0]) is not None else numbers[0]  # Annotated[float, ...]

    def parse(text: str) -> str | float:
        if text in words:
            return text
        number: float = kind(text)
        return number

    parse.__name__ = f"{kind.__name__} or {' / '.join(words)}"  # what argparse names in its error message
    return parse


def add_fit_options(parser: argparse.ArgumentParser) -> None:
    """``--config`` and every fit option, in their help groups."""
    parser.add_argument("--config", default=None, help="YAML file of fit options")
    for title, options in FIT_OPTIONS.items():
        group = parser.add_argument_group(title)
        for flag, help_text, *metavar in options:
            _add_fit_option(group, flag, help_text, metavar[0] if metavar else None)

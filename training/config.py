"""The ``fit`` configuration: one validated object built from defaults, an optional YAML file and flags.

Precedence is defaults < config file < flags. The resolved configuration is stored in the bundle's
``hyperparameters`` and in every checkpoint, so a run can be repeated or resumed from what it wrote.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from training.data.hints import SPLIT_FOLDERS
from training.errors import ConfigError

TransferMode = Literal["feature-extractor", "fine-tune", "partial", "two-phase"]
OptimizerName = Literal["sgd", "rmsprop", "adam", "adamw"]
ScheduleName = Literal["constant", "linear", "step", "cosine"]
AugmentPreset = Literal["none", "light", "standard", "trivialaugment", "randaugment"]
PositiveFloat = Annotated[float, Field(gt=0.0)]

# What the export fits on the validation split (``training.trust``), and the fewest images it fits it on.
MIN_CALIBRATION_IMAGES = 10
"""Below this the temperature would follow a handful of images: the bundle serves plain softmax."""
MIN_TRUST_IMAGES = 20
"""Prediction sets and the OOD threshold: 20 scores serve coverage up to 0.95 (so 0.9), and a 95 % threshold then
flags at least one validation image instead of sitting on the largest score."""


class FitConfig(BaseModel):
    """Everything ``fit`` needs. Field names are the flags' names with ``_`` for ``-``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Data
    data: Path = Field(description="ImageFolder tree: <data>/<class>/<image>.")
    val_data: Path | None = Field(default=None, description="Validation folder; default: a stratified split.")
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    test_data: Path | None = Field(default=None, description="Held-out folder evaluated once, at the end.")
    augment: AugmentPreset = "light"
    hflip: bool | None = Field(
        default=None, description="Random horizontal flips; default: on, off for digits and text (training.data.hints)."
    )
    mixup: float = Field(default=0.0, ge=0.0, description="MixUp alpha (0: off): batches of mixed image pairs.")
    cutmix: float = Field(default=0.0, ge=0.0, description="CutMix alpha (0: off): patches pasted between images.")
    class_weights: Literal["none", "auto"] = Field(default="none", description="auto: inverse-frequency loss.")
    balanced_sampling: bool = Field(default=False, description="Draw every class equally often per epoch.")
    seed: int = 0

    # Network
    backbone: str = "efficientnet_lite0"
    pretrained: Literal["auto", "imagenet", "none"] = "auto"
    weights: Path | None = Field(default=None, description="Local backbone weights (safetensors or a state dict).")
    image_size: int | None = Field(default=None, gt=0, description="Crop size; default: the backbone's.")
    crop_pct: float | None = Field(default=None, gt=0.0, le=1.0, description="crop / resize; default: backbone's.")
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    batch_norm: bool | None = Field(default=None, description="LeNet-5's batch_norm; VGG's _bn variants.")

    # Transfer learning
    mode: TransferMode | Literal["auto"] = "fine-tune"
    unfreeze: int | None = Field(default=None, ge=1, description="partial/two-phase: the last N stages.")
    head_epochs: int = Field(default=1, ge=1, description="two-phase: epochs with the backbone frozen.")
    finetune_lr_scale: float = Field(default=0.1, gt=0.0, description="two-phase: lr factor once unfrozen.")
    layer_decay: float | None = Field(default=None, gt=0.0, le=1.0, description="lr x decay**depth per stage.")

    # Optimisation
    optimizer: OptimizerName = "adamw"
    lr: PositiveFloat | Literal["auto"] = Field(default=1e-3, description="auto: the LR range test chooses.")
    momentum: float | None = Field(default=None, ge=0.0, lt=1.0, description="sgd: default 0.9; rmsprop: 0.")
    nesterov: bool = False
    weight_decay: float = Field(default=1e-4, ge=0.0)
    l1: float = Field(default=0.0, ge=0.0)
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    clip_grad_norm: float | None = Field(default=None, gt=0.0)
    schedule: ScheduleName = "cosine"
    warmup_epochs: float = Field(default=0.0, ge=0.0)
    lr_end: float | None = Field(default=None, ge=0.0, description="linear/cosine: final lr; default lr / 100.")
    decay_epochs: float | None = Field(default=None, gt=0.0, description="linear/cosine: tau; default: to the end.")
    step_epochs: float = Field(default=10.0, gt=0.0, description="step: epochs between decays.")
    gamma: float = Field(default=0.1, gt=0.0, le=1.0, description="step: the decay factor.")

    # Loop
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=64, ge=1)
    patience: int | None = Field(default=None, ge=1, description="Early stopping; default: off.")
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    workers: int | None = Field(default=None, ge=0, description="DataLoader workers; default: from the CPU count.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(default=False, description="CUDA mixed precision (bf16 where supported, else fp16).")
    channels_last: bool = False
    cache_features: bool = Field(default=True, description="Frozen phases train on cached backbone outputs.")

    # Outputs
    models_dir: Path = Path("models")
    name: str | None = Field(default=None, description="Model name; default: from the data folder.")
    run_dir: Path | None = Field(default=None, description="Logs and checkpoints; default: runs/<name>-<time>.")
    export: bool = True
    int8: bool = Field(default=True, description="Quantise the exported bundle to int8 (model.int8.onnx).")
    max_top1_drop: float = Field(default=1.0, ge=0.0, description="int8: top-1 points it may lose against fp32.")
    tensorboard: bool = Field(default=False, description="TensorBoard event logs in <run_dir>/tensorboard.")
    quiet: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> FitConfig:
        if self.mode == "two-phase" and self.head_epochs >= self.epochs:
            raise ValueError(f"two-phase needs epochs ({self.epochs}) > head_epochs ({self.head_epochs})")
        if self.mode in ("feature-extractor", "fine-tune", "auto") and self.unfreeze is not None:
            raise ValueError(f"unfreeze applies to the partial and two-phase modes, not {self.mode}")
        if self.weights is not None and self.pretrained == "none":
            raise ValueError("weights and pretrained=none contradict each other; drop one")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs the sgd optimizer with momentum > 0")
        if self.momentum is not None and self.optimizer not in ("sgd", "rmsprop"):
            raise ValueError(f"momentum applies to sgd and rmsprop; {self.optimizer} has its own (betas)")
        if self.class_weights != "none" and self.balanced_sampling:
            raise ValueError("class_weights and balanced_sampling both correct for unbalanced classes; choose one")
        return self

    @property
    def base_lr(self) -> float:
        """The learning rate as a number (``lr: auto`` is replaced by the range test's choice before training)."""
        if isinstance(self.lr, str):
            raise ValueError("lr is still 'auto': run the learning-rate finder first (training.lr_finder)")
        return self.lr

    @property
    def flips(self) -> bool:
        """Whether to flip (``hflip: None`` is resolved from the class names by ``prepare_run`` first)."""
        if self.hflip is None:
            raise ValueError("hflip is still undecided: resolve it from the classes first (training.engine.run)")
        return self.hflip

    @property
    def transfer_mode(self) -> TransferMode:
        """The transfer mode (``mode: auto`` is replaced by the decision of ``training.auto_mode`` first)."""
        if self.mode == "auto":
            raise ValueError("mode is still 'auto': decide it first (training.auto_mode)")
        return self.mode

    @property
    def dataset_name(self) -> str:
        """The data folder's name, or its parent's when the folder is a split (``data/pets/train`` -> ``pets``)."""
        folder = self.data.resolve()
        if folder.name.lower() in SPLIT_FOLDERS and folder.parent.name:
            folder = folder.parent
        return folder.name

    @property
    def model_name(self) -> str:
        """The bundle name: ``name`` or one derived from the data folder (``data/pets/train`` -> ``pets``)."""
        if self.name:
            return self.name
        slug = re.sub(r"[^a-z0-9._-]+", "-", self.dataset_name.lower()).strip("-._")
        return slug[:64] or "model"

    def hyperparameters(self) -> dict[str, Any]:
        """The resolved configuration as JSON-ready values (paths as strings)."""
        return self.model_dump(mode="json")


def revalidated(config: FitConfig, **changes: Any) -> FitConfig:
    """``config`` with ``changes`` (a choice made for the user: ``--mode auto``, ``--lr auto``), checked again."""
    try:
        return FitConfig.model_validate({**config.model_dump(), **changes})
    except ValueError as exc:
        raise ConfigError(f"after choosing {changes}: {exc}") from exc


FIELDS = frozenset(FitConfig.model_fields)
# What may change when a run is resumed; everything else would make the result a different experiment.
RESUME_OVERRIDABLE = frozenset(
    {"epochs", "quiet", "workers", "device", "models_dir", "name", "export", "test_data"}
    | {"tensorboard", "cache_features"}  # how the run is watched and computed, not what it learns
    | {"int8", "max_top1_drop"}  # what the export adds beside the model
)


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML mapping of fit options; keys may use ``-`` or ``_``."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of options, not {type(raw).__name__}")
    values = {str(key).replace("-", "_"): value for key, value in raw.items()}
    unknown = sorted(set(values) - FIELDS)
    if unknown:
        raise ConfigError(f"config file {path}: unknown option(s) {', '.join(unknown)}; see `fit --help`")
    return values


def build_config(file_values: Mapping[str, Any], flag_values: Mapping[str, Any]) -> FitConfig:
    """Merge file and flag values (flags win) and validate; ``ConfigError`` names each bad option."""
    merged = {**file_values, **flag_values}
    if "data" not in merged:
        raise ConfigError("no training data: pass --data DIR (an ImageFolder tree) or set data in --config")
    try:
        return FitConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def override_for_resume(saved: Mapping[str, Any], flag_values: Mapping[str, Any]) -> FitConfig:
    """The checkpoint's configuration with the few options that may change on resume."""
    changed = sorted(key for key, value in flag_values.items() if key not in RESUME_OVERRIDABLE and key != "data")
    if changed:
        raise ConfigError(
            f"cannot change {', '.join(changed)} when resuming (the run would no longer be the same experiment); "
            f"only {', '.join(sorted(RESUME_OVERRIDABLE))} may be given with --resume"
        )
    return build_config(saved, {key: value for key, value in flag_values.items() if key != "data"})


def _describe(exc: ValidationError) -> str:
    """One clause per bad option; the members of a union (``lr: number | auto``) are joined with "or"."""
    by_option: dict[str, list[str]] = {}
    for error in exc.errors():
        loc = error["loc"]
        message = error["msg"].removeprefix("Value error, ")
        option = str(loc[0]).replace("_", "-") if loc else ""
        alternatives = by_option.setdefault(option, [])
        alternatives.append(message if not alternatives else message.removeprefix("Input should be "))
    parts = [
        f"{option}: {' or '.join(messages)}" if option else " or ".join(messages)
        for option, messages in by_option.items()
    ]
    return "invalid configuration: " + "; ".join(parts)

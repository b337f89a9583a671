"""TensorBoard event logs of a fit (``--tensorboard``), in ``<run_dir>/tensorboard``: watch with
``tensorboard --logdir runs``.

Per epoch: ``loss/train``, ``loss/val``, ``accuracy/*``, ``macro_f1/*`` and ``lr`` (step = epoch). At the end: the
validation (and test) confusion matrix as an image at the best epoch, and the resolved configuration with the final
metrics in the HParams tab. A resumed run drops whatever an interrupted one had logged after its last checkpoint
(``purge_step``), so each epoch appears once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

BOARD_DIR = "tensorboard"  # in the run folder
# history column -> TensorBoard tag
EPOCH_SCALARS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_accuracy": "accuracy/train",
    "val_accuracy": "accuracy/val",
    "train_macro_f1": "macro_f1/train",
    "val_macro_f1": "macro_f1/val",
    "lr": "lr",
}


class TensorBoardLog:
    """One ``SummaryWriter`` for a run, written by rank 0."""

    def __init__(self, run_dir: Path, *, resume_after: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder = run_dir / BOARD_DIR
        self.writer = SummaryWriter(str(self.folder), purge_step=resume_after + 1 if resume_after else None)

    def epoch(self, row: Mapping[str, Any]) -> None:
        """The scalars of one history row."""
        for column, tag in EPOCH_SCALARS.items():
            if row.get(column) is not None:
                self.writer.add_scalar(tag, float(row[column]), global_step=int(row["epoch"]))
        self.writer.flush()

    def confusion(self, split: str, png: Path, step: int) -> None:
        """A confusion-matrix figure (the PNG the run folder has too) as an image."""
        from PIL import Image

        with Image.open(png) as image:
            pixels = np.asarray(image.convert("RGB"))
        self.writer.add_image(f"confusion_matrix/{split}", pixels, global_step=step, dataformats="HWC")

    def hyperparameters(self, values: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        """The HParams tab: the resolved configuration, with the run's final metrics as its results."""
        from torch.utils.tensorboard.summary import hparams

        plain = {key: _plain(value) for key, value in values.items()}
        experiment, start, end = hparams(plain, dict(metrics))  # type: ignore[no-untyped-call]
        # The public add_hparams would write them into a second run folder; these belong to this run.
        file_writer = self.writer._get_file_writer()  # type: ignore[no-untyped-call]
        for summary in (experiment, start, end):
            file_writer.add_summary(summary)
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value)

    def summary(self, metrics: Mapping[str, Any], best_epoch: int, run_dir: Path, values: Mapping[str, Any]) -> None:
        """The end of the log: the confusion matrices (``run_dir/confusion_<split>.png``) at the best epoch, the
        configuration ``values`` and the final scores of each split in ``metrics``."""
        for split in ("val", "test"):
            if split in metrics:
                self.confusion(split, run_dir / f"confusion_{split}.png", best_epoch)
        finals = {
            f"hparam/{split}_{key}": float(metrics[split][key])
            for split in ("val", "test")
            if split in metrics
            for key in ("accuracy", "macro_f1", "loss")
        }
        self.hyperparameters(values, finals)

    def close(self) -> None:
        self.writer.close()
        logger.info("TensorBoard logs in %s (tensorboard --logdir %s)", self.folder, self.folder.parent)


def _plain(value: Any) -> bool | int | float | str:
    """What the HParams plugin accepts: booleans, numbers and strings (None and the rest as text)."""
    if isinstance(value, bool | int | float | str):
        return value
    return "none" if value is None else str(value)

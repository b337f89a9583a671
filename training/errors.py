"""Errors the user can fix. The CLI prints their message and exits with status 2, without a traceback."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A problem with the user's input (flags, config, data, weights); the message says what to do about it."""


class ConfigError(UserError):
    """The flags or the config file are invalid or contradict each other."""


class DataError(UserError):
    """The image folder cannot be used for training or evaluation."""


class InterruptedTrainingError(Exception):
    """Training was interrupted (Ctrl-C); the checkpoint of the last finished epoch is in ``run_dir``."""

    def __init__(self, run_dir: Path, epochs: int) -> None:
        super().__init__(f"interrupted after {epochs} finished epoch(s)")
        self.run_dir = run_dir
        self.epochs = epochs

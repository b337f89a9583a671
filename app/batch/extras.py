"""The optional dependencies of the batch command (the serving install has neither): pyarrow for Parquet output
(``imgclf[parquet]``), Ray Data for the Ray engine (``imgclf[ray]``)."""

from __future__ import annotations

import importlib.util


class EngineUnavailableError(RuntimeError):
    """The engine asked for cannot run here (not installed, cluster unreachable); the message says what to do."""


def available(*modules: str) -> bool:
    """Whether every module can be imported (without importing it)."""
    try:
        return all(importlib.util.find_spec(module) is not None for module in modules)
    except (ImportError, ValueError):
        return False

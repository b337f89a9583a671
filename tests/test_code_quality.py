"""The linters are part of the suite, so CI (which runs `make test`) keeps the code ruff- and mypy-clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=240)


def test_ruff_lint_and_format() -> None:
    lint = run("ruff", "check", ".", "--output-format", "concise")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = run("ruff", "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


@pytest.mark.slow
def test_mypy() -> None:
    result = run("mypy", "modelspec", "app", "training", "scripts/bench", "scripts/soak")
    assert result.returncode == 0, result.stdout + result.stderr

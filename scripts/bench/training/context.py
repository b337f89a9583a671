"""What every part of the training benchmark shares: the run's settings and how it starts a command."""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from scripts.bench import ROOT


@dataclasses.dataclass(frozen=True)
class Settings:
    data: Path
    work: Path
    threads: int
    image_size: int
    epochs: int
    subset_per_class: int
    subset_epochs: int
    throughput_batches: int
    smoke: bool


def run(command: list[str], threads: int, log: Path) -> float:
    """Run a command with ``threads`` intra-op threads, its output in ``log``; return its wall time."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    print(f"$ {shlex.join(command)}", flush=True)
    start = time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}); see {log}")
    return seconds

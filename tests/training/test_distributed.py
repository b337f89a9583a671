"""The same ``fit`` command under torchrun: two CPU processes (gloo), DistributedDataParallel, rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelspec import list_versions, read_bundle
from tests.training.folders import FolderFactory

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "extra",
    [[], ["--mode", "feature-extractor", "--augment", "none", "--balanced-sampling"]],
    ids=["fine-tune", "cached-features-balanced-sampling"],
)
def test_fit_under_torchrun_with_two_processes(image_folder: FolderFactory, tmp_path: Path, extra: list[str]) -> None:
    data = image_folder({"red": 20, "green": 20, "blue": 20}, size=16)
    models, run = tmp_path / "models", tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "training", "fit", "--data", str(data), "--backbone", "lenet5", "--image-size", "16",
        "--epochs", "2", "--batch-size", "8", "--lr", "0.01", "--workers", "0", "--device", "cpu",
        "--models-dir", str(models), "--run-dir", str(run), "--name", "ddp", "--quiet", *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-4000:]

    # Only rank 0 printed its report and wrote a bundle, and wrote it once.
    assert done.stdout.count("## Results") == 1
    assert done.stdout.strip().splitlines()[-1] == str(models / "ddp" / "1")
    assert list_versions(models, "ddp") == [1]
    spec = read_bundle(models / "ddp" / "1").spec
    assert spec.hyperparameters["runtime"]["world_size"] == 2
    assert "rank 1 of 2 joined the gloo process group" not in done.stderr  # other ranks log warnings only
    assert "rank 0 of 2 joined the gloo process group" in done.stderr

    # Each process trained on its own half: together they saw the training set once per epoch, not twice.
    history = json.loads((run / "history.json").read_text())
    assert len(history) == 2
    train_size = 60 - spec.metrics["val"]["samples"]
    assert all(row["train_images"] == train_size for row in history), (history, train_size)
    assert spec.metrics["val"]["samples"] == 12
    if extra:  # rank 0 computed the embeddings once; both processes trained the head on them
        assert "feature cache: on" in done.stdout
        assert len(list((run / "features").glob("*.safetensors"))) == 1

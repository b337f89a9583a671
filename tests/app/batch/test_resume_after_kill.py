"""``kill -9`` in the middle of a run: the output stays readable and ``--resume`` finishes it without duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from app.batch.__main__ import main
from app.engine.inference import sample_jpeg
from tests.app.batch.conftest import read_rows

ROOT = Path(__file__).resolve().parents[3]
IMAGES = 1500


def rows_so_far(output: Path) -> int:
    """Rows on disk now (complete lines; Parquet: rows in the finished parts)."""
    if output.suffix == ".parquet":
        import pyarrow.parquet as pq

        parts = output.with_name(output.name + ".parts")
        return sum(pq.read_metadata(p).num_rows for p in parts.glob("*.parquet")) if parts.is_dir() else 0
    return output.read_bytes().count(b"\n") - (output.suffix == ".csv") if output.exists() else 0


def readable_rows(output: Path) -> list[dict[str, object]]:
    """What a user can read of an interrupted output with the usual tools."""
    if output.suffix == ".parquet":
        import pyarrow.parquet as pq

        assert not output.exists()  # assembled only when the run completes
        return pq.read_table(output.with_name(output.name + ".parts")).to_pylist()
    return read_rows(output)


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended before it could be killed: {process.communicate()}"
        assert time.monotonic() < deadline, "no rows appeared in time"
        time.sleep(0.005)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["out.csv", "out.jsonl", "out.parquet"])
def test_kill_9_mid_run_then_resume(
    name: str, tmp_path: Path, tiny_models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    photo = sample_jpeg()  # 640x480: decoded at full size (draft off), a few ms each, so the run lasts seconds
    for i in range(IMAGES):
        (folder / f"{i:05d}.jpg").write_bytes(photo)
    output = tmp_path / name
    args = [str(folder), "--output", str(output), "--embeddings", "--quiet"]
    env = {
        **os.environ,
        "IMGCLF_MODELS_DIR": str(tiny_models_dir),
        "IMGCLF_DEFAULT_MODEL": "",
        "IMGCLF_DRAFT_DECODE": "false",
        "IMGCLF_DECODE_THREADS": "1",
        "IMGCLF_INTRA_OP_THREADS": "1",
        "IMGCLF_MAX_BATCH_SIZE": "4",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "app.batch", *args], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for(lambda: rows_so_far(output) >= 40, process)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL

    before = readable_rows(output)
    assert 40 <= len(before) < IMAGES
    assert len({row["path"] for row in before}) == len(before)
    if output.suffix != ".parquet":
        matrix = np.load(output.with_name(output.name + ".embeddings.npy"))  # readable, and holds every referenced row
        assert max(int(row["embedding_row"]) for row in before) < len(matrix)  # type: ignore[call-overload]

    for key in ("IMGCLF_MODELS_DIR", "IMGCLF_DEFAULT_MODEL", "IMGCLF_MAX_BATCH_SIZE"):
        monkeypatch.setenv(key, env[key])
    assert main([*args, "--resume"]) == 0

    after = read_rows(output)
    paths = [row["path"] for row in after]
    assert sorted(paths) == sorted(str(p) for p in folder.iterdir())  # every image once: none lost, none twice
    kept = {row["path"]: row["scores"] for row in after}
    assert all(kept[row["path"]] == pytest.approx(row["scores"]) for row in before)
    if output.suffix == ".parquet":
        assert not output.with_name(output.name + ".parts").exists()
        assert all(len(row["embedding"]) == 84 for row in after)
    else:
        matrix = np.load(output.with_name(output.name + ".embeddings.npy"))
        assert sorted(row["embedding_row"] for row in after) == list(range(IMAGES)) == list(range(len(matrix)))

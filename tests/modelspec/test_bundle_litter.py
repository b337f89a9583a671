"""Temporary folders of bundle writers that were killed are cleaned up; a live writer's folder never is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from modelspec import ONNX_FILE, SPEC_FILE, WEIGHTS_FILE, list_models, read_bundle, remove_stale_temp_dirs, write_bundle
from modelspec.bundle import ORPHAN_AGE_SECONDS, TMP_PREFIX
from tests.conftest import tiny_spec

ROOT = Path(__file__).resolve().parents[2]

# A writer that writes half of its weights, says so, and hangs: the test kills it with SIGKILL.
HANGING_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from modelspec import WEIGHTS_FILE, write_bundle
    from tests.conftest import tiny_spec

    def hang(path):
        path.write_bytes(b"half of the weights")
        print("writing", flush=True)
        time.sleep(600)

    write_bundle(Path(sys.argv[1]), tiny_spec(), {WEIGHTS_FILE: hang})
    """
)


def litter(models_dir: Path) -> list[Path]:
    return sorted(p for p in models_dir.iterdir() if p.name.startswith(TMP_PREFIX))


def writers(payload: bytes = b"weights") -> dict[str, object]:
    return {WEIGHTS_FILE: lambda p: p.write_bytes(payload), ONNX_FILE: lambda p: p.write_bytes(b"graph")}


def killed_writer(models_dir: Path) -> None:
    """Start a writer in another process and kill it (SIGKILL) in the middle of its write."""
    process = subprocess.Popen(
        [sys.executable, "-c", HANGING_WRITER, str(models_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    with process.stdout:
        assert process.stdout.readline().strip() == "writing"
        process.send_signal(signal.SIGKILL)
        process.wait(30)


def test_the_next_write_removes_what_a_killed_writer_left(tmp_path: Path) -> None:
    killed_writer(tmp_path)
    [first] = litter(tmp_path)  # what a kill -9 leaves: half a bundle in a hidden folder
    killed_writer(tmp_path)
    [second] = litter(tmp_path)  # the second writer removed the first one's folder before it was killed too
    assert second != first
    bundle = write_bundle(tmp_path, tiny_spec(), writers())  # type: ignore[arg-type]
    assert litter(tmp_path) == []
    assert list_models(tmp_path) == {"tiny": [1]}
    assert sorted(p.name for p in bundle.path.iterdir()) == sorted([ONNX_FILE, SPEC_FILE, WEIGHTS_FILE])


def test_a_live_writer_is_never_touched(tmp_path: Path) -> None:
    seen: list[list[Path]] = []

    def write_while_others_clean(path: Path) -> None:
        path.write_bytes(b"weights")
        remove_stale_temp_dirs(tmp_path)  # another process cleaning up in the middle of this write
        seen.append(litter(tmp_path))

    bundle = write_bundle(tmp_path, tiny_spec(), {WEIGHTS_FILE: write_while_others_clean})
    assert len(seen[0]) == 1  # its folder survived the cleaning...
    assert read_bundle(bundle.path).version == 1  # ...and the bundle is whole


def test_a_folder_without_a_lock_file_is_removed_only_once_old(tmp_path: Path) -> None:
    old, recent = tmp_path / f"{TMP_PREFIX}tiny-old", tmp_path / f"{TMP_PREFIX}tiny-recent"
    for folder in (old, recent):
        folder.mkdir()
        (folder / WEIGHTS_FILE).write_bytes(b"half")
    long_ago = time.time() - ORPHAN_AGE_SECONDS - 60
    os.utime(old, (long_ago, long_ago))
    assert remove_stale_temp_dirs(tmp_path) == [old]
    assert litter(tmp_path) == [recent]  # perhaps a writer that has not created its lock yet


def test_the_service_removes_the_litter_at_start(tmp_path: Path, tiny_models_dir: Path) -> None:
    from tests.app.conftest import settings_for

    models_dir = tmp_path / "models"
    models_dir.mkdir()
    killed_writer(models_dir)
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(settings_for(models_dir))) as client:
        assert client.get("/health/live").status_code == 200
    assert litter(models_dir) == []

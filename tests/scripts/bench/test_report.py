"""BENCHMARKS.md holds one section per benchmark: writing one must leave the others exactly as they were."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scripts.bench.report import publish, replace_section, write_section

TRAINING = "## Training\n\nMeasured by the training benchmark.\n\n### (c) Our loop\n\n| loop | img/s |\n|---|---|\n"
SERVING = "## Serving\n\nOld numbers.\n\n### Over HTTP\n\n| clients | img/s |\n|---:|---:|\n| 16 | 120.0 |\n"
GPU = "## GPU (one-off checks)\n\n- fp16 on an H100.\n"
FILE = f"# Benchmarks\n\nIntro.\n\n{TRAINING}\n{SERVING}\n{GPU}"
NEW_SERVING = "## Serving\n\nNew numbers.\n\n### Over HTTP\n\n| clients | img/s |\n|---:|---:|\n| 16 | 130.0 |\n"


def test_replaces_its_own_section_and_keeps_the_others() -> None:
    updated = replace_section(FILE, NEW_SERVING)

    assert updated == f"# Benchmarks\n\nIntro.\n\n{TRAINING}\n{NEW_SERVING}\n{GPU}"
    assert "Old numbers" not in updated


def test_the_last_section_is_replaced_up_to_the_end() -> None:
    updated = replace_section(FILE, "## GPU (one-off checks)\n\n- fp32 now.")

    assert updated.endswith(f"{SERVING}\n## GPU (one-off checks)\n\n- fp32 now.\n")
    assert "fp16" not in updated


def test_a_missing_section_is_added_at_the_end() -> None:
    updated = replace_section(f"# Benchmarks\n\n{TRAINING}\n\n\n", NEW_SERVING)

    assert updated == f"# Benchmarks\n\n{TRAINING}\n{NEW_SERVING}"


def test_writing_twice_gives_one_section() -> None:
    once = replace_section(FILE, NEW_SERVING)

    assert replace_section(once, NEW_SERVING) == once
    assert once.count("## Serving") == 1


def test_a_section_needs_a_level_two_heading() -> None:
    with pytest.raises(ValueError, match="'## ' heading"):
        replace_section(FILE, "### Serving\n\nnumbers\n")


def test_write_section_creates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"

    write_section(path, NEW_SERVING)

    assert path.read_text() == f"# Benchmarks\n\n{NEW_SERVING}"
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_write_section_updates_in_place_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(FILE)

    write_section(path, NEW_SERVING)

    assert path.read_text() == replace_section(FILE, NEW_SERVING)
    assert [p.name for p in tmp_path.iterdir()] == ["BENCHMARKS.md"]


def test_a_failed_write_leaves_the_file_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(FILE)

    def disk_full(source: object, target: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_section(path, NEW_SERVING)

    assert path.read_text() == FILE
    assert [p.name for p in tmp_path.iterdir()] == ["BENCHMARKS.md"]


def test_publish_writes_the_file_unless_told_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    publish("## Batch\n\nnumbers\n", "-")  # --output -: print only
    assert not (tmp_path / "-").exists()
    assert "numbers" in capsys.readouterr().out

    publish("## Batch\n\nnumbers\n", tmp_path / "BENCHMARKS.md")
    assert "## Batch\n\nnumbers" in (tmp_path / "BENCHMARKS.md").read_text()

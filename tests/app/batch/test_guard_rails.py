"""The batch command where it used to be silent: files skipped by their extension, a folder with no image, a
misspelt model name, and a full disk."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from app.batch.__main__ import main
from app.batch.outputs import files
from tests.app.batch.conftest import make_images, read_rows


def test_files_skipped_by_extension_are_reported(
    tmp_path: Path, batch_env: object, capsys: pytest.CaptureFixture[str]
) -> None:
    make_images(tmp_path / "images", 3, bad=False)
    for name in ("a.pdf", "b.PDF", "c.docx"):
        (tmp_path / "images" / name).write_bytes(b"not an image")
    assert main([str(tmp_path / "images"), "-o", str(tmp_path / "out.csv"), "--quiet"]) == 0
    assert "skipped 3 files: 2 .pdf, 1 .docx" in capsys.readouterr().out
    assert len(read_rows(tmp_path / "out.csv")) == 3


def test_a_folder_without_images_is_an_error(
    tmp_path: Path, batch_env: object, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "docs").mkdir()
    for name in ("a.pdf", "b.pdf", "c.heic.txt"):
        (tmp_path / "docs" / name).write_bytes(b"%PDF")
    assert main([str(tmp_path / "docs"), "-o", str(tmp_path / "out.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "error: no image file in" in err and "skipped 3 files: 2 .pdf, 1 .txt" in err and ".jpg" in err
    assert not (tmp_path / "out.csv").exists()


def test_a_misspelt_model_suggests_the_closest(
    tmp_path: Path, batch_env: object, capsys: pytest.CaptureFixture[str]
) -> None:
    make_images(tmp_path / "images", 1, bad=False)
    assert main([str(tmp_path / "images"), "-o", str(tmp_path / "out.csv"), "--model", "tiny_", "--quiet"]) == 2
    assert "did you mean 'tiny'?" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_a_full_disk_is_one_line_naming_the_path_and_resume_finishes(
    fmt: str, tmp_path: Path, batch_env: object, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = make_images(tmp_path / "images", 24, bad=False)
    output = tmp_path / f"out.{fmt}"
    real_write = os.write
    calls = 0

    def write_until_full(handle: int, data: bytes) -> int:  # a CSV header fits; the rows: half a write, then full
        nonlocal calls
        if bytes(data[:5]) == b"path,":
            return real_write(handle, data)
        calls += 1
        if calls == 1:
            return real_write(handle, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def table_until_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "write", write_until_full)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        monkeypatch.setattr(pq, "write_table", table_until_full)
    args = [str(tmp_path / "images"), "-o", str(output), "--batch-size", "4", "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    [line] = err.strip().splitlines()
    assert line.startswith("error: no space left on the disk of ") and "bytes" in line and "--resume" in line
    assert str(tmp_path) in line
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.rglob(".*.tmp"))
    if fmt != "parquet":
        assert read_rows(output) == []  # no torn row: the half-written one was taken back
        assert len(output.read_text().splitlines()) == (1 if fmt == "csv" else 0)  # the CSV header alone

    monkeypatch.undo()
    batch_env()  # type: ignore[operator]
    assert main([*args, "--resume"]) == 0
    assert sorted(row["path"] for row in read_rows(output)) == listed

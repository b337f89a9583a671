"""Listing inputs; the progress line and the summary a user reads."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from app.batch.inputs import InputError, list_images
from app.batch.progress import Progress
from app.batch.rows import ResultRow
from app.batch.summary import Summary


def touch(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return str(path)


def test_a_folder_is_searched_recursively_for_images_and_skips_hidden_and_other_files(tmp_path: Path) -> None:
    expected = [touch(tmp_path / "b" / "deep" / "x.JPG"), touch(tmp_path / "a.png"), touch(tmp_path / "c.webp")]
    touch(tmp_path / "README.md")
    touch(tmp_path / ".hidden.jpg")
    touch(tmp_path / ".cache" / "y.jpg")
    images = list_images(str(tmp_path))
    assert [image.name for image in images] == sorted(expected)
    assert all(image.file.is_absolute() and image.file.exists() for image in images)


def test_phone_photos_are_picked_up_by_extension(tmp_path: Path) -> None:
    expected = [touch(tmp_path / name) for name in ("a.HEIC", "b.heif", "c.avif")]
    touch(tmp_path / "notes.pdf")
    assert [image.name for image in list_images(str(tmp_path))] == sorted(expected)


def test_relative_paths_stay_as_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    touch(tmp_path / "photos" / "a.jpg")
    Path("list.txt").write_text("photos/a.jpg\nphotos/missing.jpg\n")
    assert [(i.name, i.file) for i in list_images("list.txt")] == [
        ("photos/a.jpg", tmp_path / "photos" / "a.jpg"),
        ("photos/missing.jpg", tmp_path / "photos" / "missing.jpg"),
    ]
    assert [i.name for i in list_images("photos/*.jpg")] == ["photos/a.jpg"]
    assert [i.name for i in list_images("photos/a.jpg")] == ["photos/a.jpg"]


def test_a_glob_that_matches_nothing_says_so(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no image file matches"):
        list_images(str(tmp_path / "*.jpg"))


def test_the_progress_line_shows_count_rate_and_eta() -> None:
    stream = io.StringIO()
    progress = Progress(1000, stream, interactive=False, log_interval=0)
    progress.advance(0)
    progress._recent[0] = (progress._recent[0][0] - 2.0, 0)  # two seconds ago
    progress.advance(200, errors=3)
    line = stream.getvalue().splitlines()[-1]
    assert line.startswith("200/1,000 [")
    assert " 20% " in line and "3 errors" in line
    rate = float(line.split(" img/s")[0].split()[-1])
    assert 90 < rate <= 100
    assert "ETA 0:0" in line  # about 8 s left at ~100 img/s


def test_quiet_progress_writes_nothing() -> None:
    stream = io.StringIO()
    progress = Progress(10, stream, enabled=False)
    progress.advance(10)
    progress.close()
    assert stream.getvalue() == ""


def test_the_summary_counts_errors_by_code_and_top_1_labels() -> None:
    summary = Summary(model="tiny:1", engine="local engine", output="out.csv")
    ok = ResultRow("a.jpg", "tiny:1", (("circle", 0, 0.9),))
    summary.add([ok, ok, ResultRow("b.jpg", "tiny:1", (("square", 1, 0.8),))])
    summary.add([ResultRow("c.jpg", "tiny:1", error_code="empty_image", error_message="empty")])
    summary.skipped = 5
    summary.finish()
    text = summary.text()
    assert text.startswith("4 images in ")
    assert "predicted: 3; errors: 1 (empty_image 1)" in text
    assert "top-1 labels: circle 2, square 1" in text
    assert "skipped (already in the output): 5" in text

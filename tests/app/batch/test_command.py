"""``python -m app.batch`` end to end with the tiny model: each output format, bad files, model choice, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.batch.__main__ import main
from tests.app.batch.conftest import expected_error_codes, make_images, read_rows
from tests.conftest import TINY_LABELS

FORMATS = ["csv", "jsonl", "parquet"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_image_gets_a_row_with_its_top_k_or_its_error_code(
    fmt: str, tmp_path: Path, batch_env: object, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = make_images(tmp_path / "images", 40)
    output = tmp_path / f"out.{fmt}"

    assert main([str(tmp_path / "images"), "--output", str(output), "--top-k", "2", "--quiet"]) == 0

    rows = read_rows(output)
    assert sorted(row["path"] for row in rows) == listed
    errors = expected_error_codes(tmp_path / "images")
    for row in rows:
        assert row["model"] == "tiny:1"
        if row["path"] in errors:
            assert row["error_code"] == errors[row["path"]]
            assert row["labels"] == []
        else:
            assert row["error_code"] is None
            assert len(row["labels"]) == 2 and set(row["labels"]) <= set(TINY_LABELS)
            assert [TINY_LABELS[i] for i in row["indices"]] == row["labels"]
            assert row["scores"][0] >= row["scores"][1] > 0
    summary = capsys.readouterr().out
    assert "43 images" in summary
    assert "errors: 3 (empty_image 1, invalid_image 1, unsupported_image_format 1)" in summary
    assert "top-1 labels: " in summary


def test_all_classes_when_top_k_exceeds_them_and_scores_sum_to_one(tmp_path: Path, batch_env: object) -> None:
    make_images(tmp_path / "images", 5, bad=False)
    output = tmp_path / "out.jsonl"
    assert main([str(tmp_path / "images"), "-o", str(output), "--top-k", "10", "--quiet"]) == 0
    for row in read_rows(output):
        assert sorted(row["labels"]) == sorted(TINY_LABELS)
        assert sum(row["scores"]) == pytest.approx(1.0, abs=1e-5)


def test_a_listing_keeps_its_paths_and_a_missing_file_gets_an_error_row(tmp_path: Path, batch_env: object) -> None:
    listed = make_images(tmp_path / "images", 4, bad=False)
    listing = tmp_path / "list.txt"
    listing.write_text("# my images\n" + "\n".join([*listed, str(tmp_path / "gone.jpg"), listed[0]]) + "\n\n")
    output = tmp_path / "out.csv"
    assert main([str(listing), "-o", str(output), "--quiet"]) == 0
    rows = {row["path"]: row for row in read_rows(output)}
    assert sorted(rows) == sorted([*listed, str(tmp_path / "gone.jpg")])  # the duplicate once
    assert rows[str(tmp_path / "gone.jpg")]["error_code"] == "unreadable_file"


def test_a_glob_picks_the_matching_images(tmp_path: Path, batch_env: object) -> None:
    make_images(tmp_path / "images", 9, bad=False)
    output = tmp_path / "out.csv"
    assert main([str(tmp_path / "images" / "set1" / "*.jpg"), "-o", str(output), "--quiet"]) == 0
    expected = sorted(str(p) for p in (tmp_path / "images" / "set1").glob("*.jpg"))
    assert sorted(row["path"] for row in read_rows(output)) == expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_embeddings_match_each_row(fmt: str, tmp_path: Path, batch_env: object) -> None:
    make_images(tmp_path / "images", 12)
    output = tmp_path / f"out.{fmt}"
    assert main([str(tmp_path / "images"), "-o", str(output), "--embeddings", "--normalize", "--quiet"]) == 0
    rows = read_rows(output)
    if fmt == "parquet":
        vectors = {row["path"]: row["embedding"] for row in rows}
    else:
        matrix = np.load(tmp_path / f"out.{fmt}.embeddings.npy")
        assert matrix.shape == (sum(row["error_code"] is None for row in rows), 84)
        assert sorted(row["embedding_row"] for row in rows if row["error_code"] is None) == list(range(len(matrix)))
        vectors = {
            row["path"]: None if row.get("embedding_row") is None else matrix[row["embedding_row"]] for row in rows
        }
    for row in rows:
        vector = vectors[row["path"]]
        if row["error_code"] is None:
            assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
        else:
            assert vector is None


def test_an_existing_output_is_not_touched_without_resume_or_overwrite(
    tmp_path: Path, batch_env: object, capsys: pytest.CaptureFixture[str]
) -> None:
    make_images(tmp_path / "images", 3, bad=False)
    output = tmp_path / "out.csv"
    output.write_text("precious\n")
    assert main([str(tmp_path / "images"), "-o", str(output), "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert output.read_text() == "precious\n"
    assert main([str(tmp_path / "images"), "-o", str(output), "--overwrite", "--quiet"]) == 0
    assert len(read_rows(output)) == 3


@pytest.mark.parametrize("fmt", FORMATS)
def test_resume_adds_only_the_new_images(fmt: str, tmp_path: Path, batch_env: object) -> None:
    images = tmp_path / "images"
    make_images(images, 6, bad=False)
    output = tmp_path / f"out.{fmt}"
    assert main([str(images), "-o", str(output), "--embeddings", "--quiet"]) == 0
    first = {row["path"]: row for row in read_rows(output)}
    listed = make_images(images, 10, bad=False)  # four more
    assert main([str(images), "-o", str(output), "--embeddings", "--resume", "--quiet"]) == 0
    rows = read_rows(output)
    assert sorted(row["path"] for row in rows) == listed
    assert all(row["scores"] == first[row["path"]]["scores"] for row in rows if row["path"] in first)


def test_resume_refuses_other_options_or_another_model(
    tmp_path: Path, batch_env: object, capsys: pytest.CaptureFixture[str]
) -> None:
    make_images(tmp_path / "images", 3, bad=False)
    output = tmp_path / "out.csv"
    assert main([str(tmp_path / "images"), "-o", str(output), "--quiet"]) == 0
    assert main([str(tmp_path / "images"), "-o", str(output), "--top-k", "3", "--resume", "--quiet"]) == 2
    assert "it was written with --top-k 5, not 3" in capsys.readouterr().err
    assert main([str(tmp_path / "images"), "-o", str(output), "--embeddings", "--resume", "--quiet"]) == 2
    assert "it was written without --embeddings" in capsys.readouterr().err
    text = output.read_text().replace("tiny:1", "tiny:7")
    output.write_text(text)
    assert main([str(tmp_path / "images"), "-o", str(output), "--resume", "--quiet"]) == 2
    assert "made by tiny:7, not tiny:1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nope"], "available: ['tiny']"),
        (["--model", "tiny:3"], "tiny has no version 3"),
        (["--model", "tiny:x"], "the version after ':' is a number"),
        (["-o", "out.xlsx"], "name the output .csv, .jsonl or .parquet"),
    ],
)
def test_a_wrong_argument_exits_2_with_a_message_that_says_what_to_do(
    args: list[str], message: str, tmp_path: Path, batch_env: object, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    make_images(tmp_path / "images", 1, bad=False)
    monkeypatch.chdir(tmp_path)
    assert main(["images", "-o", "out.csv", *args, "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()


def test_a_missing_input_says_what_an_input_is(
    tmp_path: Path, batch_env: object, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "nothing"), "-o", str(tmp_path / "out.csv")]) == 2
    assert "pass a folder of images, a glob pattern" in capsys.readouterr().err


def test_named_version_and_the_default_model_follow_the_registry_rules(
    tmp_path: Path, batch_env: object, tiny_models_dir: Path
) -> None:
    import shutil

    from tests.conftest import export_tiny

    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models)
    export_tiny(models, name="tiny", seed=1)  # version 2: the newest, used by default
    export_tiny(models, name="other", seed=2)
    make_images(tmp_path / "images", 2, bad=False)
    common = [str(tmp_path / "images"), "--models-dir", str(models), "--quiet"]
    batch_env(default_model="tiny")
    assert main([*common, "-o", str(tmp_path / "a.csv")]) == 0
    assert {row["model"] for row in read_rows(tmp_path / "a.csv")} == {"tiny:2"}
    assert main([*common, "-o", str(tmp_path / "b.csv"), "--model", "tiny:1"]) == 0
    assert {row["model"] for row in read_rows(tmp_path / "b.csv")} == {"tiny:1"}
    batch_env(default_model="")  # two models, neither the ImageNet default: the first by name
    assert main([*common, "-o", str(tmp_path / "c.csv")]) == 0
    assert {row["model"] for row in read_rows(tmp_path / "c.csv")} == {"other:1"}

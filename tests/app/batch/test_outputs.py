"""The output files on their own: what a crash leaves behind is readable, and reopening it recovers cleanly."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from app.batch.outputs import OutputError, open_output
from app.batch.outputs.parquet import MERGE_EVERY
from app.batch.rows import ResultRow, RowOptions
from tests.app.batch.conftest import read_rows

OPTIONS = RowOptions(top_k=2, embeddings=True)


def rows(start: int, count: int) -> list[ResultRow]:
    made = []
    for i in range(start, start + count):
        if i % 7 == 3:
            made.append(ResultRow(f"img{i}.jpg", "tiny:1", error_code="invalid_image", error_message="truncated"))
        else:
            vector = np.full(4, i, np.float32)
            made.append(
                ResultRow(f"img{i}.jpg", "tiny:1", (("circle", 0, 0.75), ("square", 1, 0.25)), embedding=vector)
            )
    return made


@pytest.mark.parametrize("name", ["out.csv", "out.jsonl"])
def test_a_torn_last_line_and_unreferenced_embeddings_are_cut_on_resume(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    output = open_output(path, OPTIONS, 4)
    output.write(rows(0, 5))
    output.write(rows(5, 5))
    output.close()
    # A crash in the middle of the next batch: its embeddings landed, half of its first line did.
    with path.open("ab") as handle:
        handle.write(b"img10.jpg,tin")
    npy = tmp_path / f"{name}.embeddings.npy"
    with npy.open("ab") as handle:
        handle.write(np.ones((3, 4), np.float32).tobytes())
    complete = sum(row.ok for row in rows(0, 10))
    assert np.load(npy).shape == (complete, 4)  # the header counts what was complete; the torn tail is ignored

    again = open_output(path, OPTIONS, 4, resume=True)
    assert again.resumed().paths == {f"img{i}.jpg" for i in range(10)}
    again.write(rows(10, 4))
    again.finish()
    written = read_rows(path)
    assert [row["path"] for row in written] == [f"img{i}.jpg" for i in range(14)]
    matrix = np.load(npy)
    for row in written:
        if row["error_code"] is None:
            assert matrix[row["embedding_row"]][0] == int(row["path"][3:-4])
    assert len(matrix) == sum(row["error_code"] is None for row in written)


def test_parquet_parts_are_a_dataset_while_running_and_one_file_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    output = open_output(path, OPTIONS, 4)
    for start in range(0, (MERGE_EVERY + 3) * 2, 2):
        output.write(rows(start, 2))
    parts = tmp_path / "out.parquet.parts"
    names = sorted(p.name for p in parts.glob("*.parquet"))
    assert names[0].startswith("merged-") and len(names) == 4  # 64 small parts merged, 3 since
    assert pq.read_table(parts).num_rows == (MERGE_EVERY + 3) * 2  # readable as it is, mid-run
    output.finish()
    assert not parts.exists()
    table = pq.read_table(path)
    assert table.column("path").to_pylist() == [f"img{i}.jpg" for i in range(table.num_rows)]


def test_parquet_recovers_from_a_crash_in_any_step(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    output = open_output(path, OPTIONS, 4)
    for start in range(0, MERGE_EVERY * 2, 2):
        output.write(rows(start, 2))
    output.close()
    parts = tmp_path / "out.parquet.parts"
    # A crash while merging: the merged part is in place but the small parts it holds are not all removed yet,
    # and a part being written is left under its temporary name.
    merged = next(parts.glob("merged-*.parquet"))
    first = merged.name.split("-")[1]
    pq.write_table(pq.read_table(merged).slice(0, 2), parts / f"part-{first}.parquet")
    (parts / ".part-999999999.parquet.tmp").write_bytes(b"PAR1 half a file")

    again = open_output(path, OPTIONS, 4, resume=True)
    assert len(again.resumed().paths) == MERGE_EVERY * 2
    assert not list(parts.glob(".*.tmp"))
    again.write(rows(MERGE_EVERY * 2, 2))
    again.finish()
    assert pq.read_table(path).num_rows == MERGE_EVERY * 2 + 2


def test_parquet_parts_already_assembled_are_not_counted_twice(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    output = open_output(path, OPTIONS, 4)
    output.write(rows(0, 4))
    parts = tmp_path / "out.parquet.parts"
    saved = {p.name: p.read_bytes() for p in parts.iterdir()}
    output.finish()
    # A crash between renaming the assembled file into place and removing the parts.
    parts.mkdir()
    for name, data in saved.items():
        (parts / name).write_bytes(data)

    again = open_output(path, OPTIONS, 4, resume=True)
    assert again.resumed().paths == {f"img{i}.jpg" for i in range(4)}
    assert not parts.exists() or not list(parts.glob("*.parquet"))
    again.write(rows(4, 2))
    again.finish()
    assert pq.read_table(path).column("path").to_pylist() == [f"img{i}.jpg" for i in range(6)]


def test_parquet_resume_refuses_a_file_written_without_embeddings(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    output = open_output(path, RowOptions(top_k=2), 4)
    output.write(rows(0, 3))
    output.finish()
    with pytest.raises(OutputError, match="without --embeddings"):
        open_output(path, OPTIONS, 4, resume=True)


def test_an_empty_run_still_writes_a_readable_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    open_output(path, OPTIONS, 4).finish()
    assert pq.read_table(path).num_rows == 0
    assert os.listdir(tmp_path) == ["out.parquet"]

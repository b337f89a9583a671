"""The Parquet output: crash-safe while it runs, one ordinary Parquet file when it completes.

A Parquet file is only readable once its footer is written, at the end, so a writer killed halfway leaves nothing
usable. Instead, each batch of rows becomes a small, complete Parquet file in ``FILE.parts/`` (written to a hidden
temporary name, fsynced, renamed), and every ``MERGE_EVERY`` of them are merged into one larger part so that a long
run does not leave tens of thousands of files. At any moment the folder is a Parquet dataset that pandas, pyarrow,
DuckDB or Spark read as it is (``pandas.read_parquet("out.parquet.parts")``); a crash loses at most the batch being
written. When the run completes, the parts (after the rows of an earlier ``FILE``, when a run is resumed after one
completed) are streamed into ``FILE`` in large row groups, which is renamed into place, and the folder is removed.

The folder holds a ``_token`` and the assembled file records it in its metadata: if a crash comes between the
rename and the removal, resume sees that the parts are already in ``FILE`` and does not count them twice.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from app.batch.arrow import schema, to_table
from app.batch.outputs.base import OutputError, Resumed
from app.batch.outputs.files import disk_full, remove
from app.batch.rows import ResultRow, RowOptions
from modelspec.diskspace import is_disk_full
from modelspec.files import fsync_path

MERGE_EVERY = 64
ROW_GROUP_ROWS = 65_536
ROW_GROUP_BYTES = 64 * 2**20
TOKEN_FILE = "_token"
TOKEN_KEY = b"imgclf.parts_token"
PART = re.compile(r"^part-(\d+)\.parquet$")
MERGED = re.compile(r"^merged-(\d+)-(\d+)\.parquet$")


class ParquetOutput:
    def __init__(self, path: Path, options: RowOptions) -> None:
        self.path = path
        self.parts = path.with_name(path.name + ".parts")
        self._schema = schema(options.embeddings, options.coverage is not None)
        self._resumed = Resumed()
        if path.exists():
            self._check_schema(path)
            self._add_done(pq.read_table(path, columns=["path", "model"]))
        if self.parts.is_dir() and self._token() == self._assembled_token():
            remove(self.parts)  # a crash after the assembled file was renamed into place: its rows are in it
        if self.parts.is_dir():
            self._recover_parts()
        else:
            self.parts.mkdir()
            _write_durably(self.parts / TOKEN_FILE, uuid.uuid4().hex.encode())
            fsync_path(self.path.parent)
        self._small = sorted(_parts(self.parts, PART))
        self._next = 1 + max((last for _, last, _ in self._files()), default=0)
        self._written = False

    def resumed(self) -> Resumed:
        return self._resumed

    def write(self, rows: Sequence[ResultRow]) -> None:
        if not rows:
            return
        name = f"part-{self._next:09d}.parquet"
        _write_table(
            self.parts / name,
            to_table(rows, "embedding" in self._schema.names, "prediction_set" in self._schema.names),
        )
        self._small.append((self._next, self._next, name))
        self._next += 1
        self._written = True
        if len(self._small) >= MERGE_EVERY:
            self._merge()

    def finish(self) -> None:
        """Assemble ``FILE`` from an earlier ``FILE`` (if any) and the parts, then remove the parts."""
        if self.path.exists() and not any(True for _ in self._files()):
            remove(self.parts)  # nothing new since the file was assembled
            return
        token = self._token()
        temporary = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with pq.ParquetWriter(temporary, self._schema.with_metadata({TOKEN_KEY: token.encode()})) as writer:
                for table in _row_groups(self._sources()):
                    writer.write_table(table)
            with temporary.open("rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
            fsync_path(self.path.parent)
        except BaseException as exc:
            temporary.unlink(missing_ok=True)
            if is_disk_full(exc):
                raise disk_full(self.path, sum(p.stat().st_size for p in self.parts.glob("*.parquet"))) from None
            raise
        remove(self.parts)
        fsync_path(self.path.parent)

    def close(self) -> None:
        """Leave the parts as they are: ``--resume`` continues from them."""

    # Parts

    def _files(self) -> Iterator[tuple[int, int, str]]:
        """``(first, last, name)`` of each part, merged ones included."""
        yield from _parts(self.parts, MERGED)
        yield from _parts(self.parts, PART)

    def _sources(self) -> Iterator[pa.Table]:
        if self.path.exists():
            source = pq.ParquetFile(self.path)
            for group in range(source.num_row_groups):
                yield source.read_row_group(group)
        for _, _, name in sorted(self._files()):
            yield pq.read_table(self.parts / name, schema=self._schema)

    def _merge(self) -> None:
        first, last = self._small[0][0], self._small[-1][1]
        tables = [pq.read_table(self.parts / name, schema=self._schema) for _, _, name in self._small]
        _write_table(self.parts / f"merged-{first:09d}-{last:09d}.parquet", pa.concat_tables(tables))
        for _, _, name in self._small:
            (self.parts / name).unlink()
        fsync_path(self.parts)
        self._small = []

    def _recover_parts(self) -> None:
        """Remove what a crash left half-done (temporary files; small parts already merged) and read the rest."""
        for item in self.parts.iterdir():
            if item.name.startswith(".") and item.name.endswith(".tmp"):
                item.unlink()
        merged = list(_parts(self.parts, MERGED))
        for first, _, name in _parts(self.parts, PART):
            if any(a <= first <= b for a, b, _ in merged):
                (self.parts / name).unlink()
        for _, _, name in self._files():
            self._check_schema(self.parts / name)
            self._add_done(pq.read_table(self.parts / name, columns=["path", "model"]))

    def _check_schema(self, path: Path) -> None:
        found = pq.read_schema(path).remove_metadata()
        if not found.equals(self._schema):
            embeddings = "embedding" in found.names
            coverage = "prediction_set" in found.names
            raise OutputError(
                f"{path} was written {'with' if embeddings else 'without'} --embeddings and "
                f"{'with' if coverage else 'without'} --coverage (or by an older release); use the options of the run "
                "that wrote it to continue it, or --overwrite to start over"
            )

    def _add_done(self, table: pa.Table) -> None:
        self._resumed.paths.update(table.column("path").to_pylist())
        self._resumed.models.update(table.column("model").unique().to_pylist())

    def _token(self) -> str:
        try:
            return (self.parts / TOKEN_FILE).read_text().strip()
        except OSError:
            return ""

    def _assembled_token(self) -> str | None:
        if not self.path.exists():
            return None
        metadata = pq.read_schema(self.path).metadata or {}
        return metadata.get(TOKEN_KEY, b"").decode() or None


def _parts(folder: Path, pattern: re.Pattern[str]) -> Iterator[tuple[int, int, str]]:
    for item in folder.iterdir():
        match = pattern.match(item.name)
        if match:
            numbers = [int(g) for g in match.groups()]
            yield numbers[0], numbers[-1], item.name


def _row_groups(tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """The rows of ``tables`` regrouped into tables of about ``ROW_GROUP_ROWS`` rows or ``ROW_GROUP_BYTES``."""
    pending: list[pa.Table] = []
    rows = size = 0
    for table in tables:
        pending.append(table)
        rows += table.num_rows
        size += table.nbytes
        if rows >= ROW_GROUP_ROWS or size >= ROW_GROUP_BYTES:
            yield pa.concat_tables(pending).combine_chunks()
            pending, rows, size = [], 0, 0
    if pending:
        yield pa.concat_tables(pending).combine_chunks()


def _write_table(path: Path, table: pa.Table) -> None:
    """Write ``table`` as a complete Parquet file at ``path``: a hidden temporary name, fsync, rename, fsync."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        pq.write_table(table, temporary)
        with temporary.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full(path, table.nbytes) from None
        raise
    fsync_path(path.parent)


def _write_durably(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    with temporary.open("rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_path(path.parent)

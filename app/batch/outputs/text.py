"""CSV and JSONL outputs: appended in place, a batch per ``write`` with ``fsync``, so the file is always whole rows
(a torn last line, from a crash in the middle of a write, is cut off on resume).

CSV is one row per image with ``label_i, index_i, score_i`` columns for each of the top k, then ``ood_score``,
``out_of_distribution`` (empty when the model has no OOD reference) and, with a coverage, ``prediction_set`` (labels
joined by ``|``) (a spreadsheet opens it as it is); JSONL is one object per line, shaped like a ``/v1/predict``
result. With embeddings, both name each image's
row of the ``.npy`` beside them in ``embedding_row``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.batch.outputs.base import OutputError, Resumed, embeddings_path
from app.batch.outputs.files import append_durably, truncate
from app.batch.outputs.npy import NpyAppender, NpyError
from app.batch.rows import ResultRow, RowOptions
from modelspec.files import fsync_path


@dataclass(frozen=True)
class DoneRow:
    """What resuming needs to know of a row already written."""

    path: str
    model: str
    ok: bool
    embedding_row: int | None


class TextOutput:
    """What CSV and JSONL share: recovery, the embeddings file, durable appends."""

    def __init__(self, path: Path, options: RowOptions, embedding_size: int) -> None:
        self.path = path
        self.options = options
        self._resumed = Resumed()
        npy = embeddings_path(path)
        referenced: int | None = None
        if path.exists():
            referenced = self._recover()
            self._handle = os.open(path, os.O_WRONLY | os.O_APPEND)
        else:
            self._handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                append_durably(self._handle, self.header().encode(), path)
            except BaseException:
                os.close(self._handle)
                path.unlink()  # not even its header: no file, rather than one that cannot be continued
                raise
            fsync_path(path.parent)
        self._npy: NpyAppender | None = None
        if options.embeddings:
            keep = referenced if referenced is not None and npy.exists() else None
            try:
                self._npy = NpyAppender(npy, embedding_size, keep_rows=keep)
            except NpyError as exc:
                raise OutputError(str(exc)) from None

    # What a format defines

    def header(self) -> str:
        return ""

    def parse(self, text: str) -> Iterator[DoneRow]:
        """The rows already in the file."""
        raise NotImplementedError

    def render(self, rows: Sequence[ResultRow], first_embedding_row: int) -> str:
        raise NotImplementedError

    # Shared

    def resumed(self) -> Resumed:
        return self._resumed

    def write(self, rows: Sequence[ResultRow]) -> None:
        first = 0
        if self._npy is not None:
            vectors = [row.embedding for row in rows if row.embedding is not None]
            first = self._npy.append(np.stack(vectors) if vectors else np.empty((0, self._npy.dim), np.float32))
        append_durably(self._handle, self.render(rows, first).encode(), self.path)

    def finish(self) -> None:
        self.close()

    def close(self) -> None:
        os.close(self._handle)
        if self._npy is not None:
            self._npy.close()

    def _recover(self) -> int:
        """Cut a torn last line, read what is done, and return how many embeddings the rows reference."""
        data = self.path.read_bytes()
        whole = data.rfind(b"\n") + 1
        if whole < len(data):
            truncate(self.path, whole)
        try:
            rows = list(self.parse(data[:whole].decode()))
        except (ValueError, KeyError) as exc:
            raise OutputError(
                f"cannot continue {self.path}: {exc}; pass the options of the run that wrote it, or --overwrite to "
                "start over"
            ) from None
        referenced = [row.embedding_row for row in rows if row.embedding_row is not None]
        if referenced and not self.options.embeddings:
            raise OutputError(f"{self.path} was written with --embeddings: pass it again to continue it")
        if self.options.embeddings and any(row.ok and row.embedding_row is None for row in rows):
            raise OutputError(f"{self.path} was written without --embeddings: leave it out to continue it")
        self._resumed = Resumed({row.path for row in rows}, {row.model for row in rows})
        return max(referenced, default=-1) + 1


class CsvOutput(TextOutput):
    def columns(self) -> list[str]:
        ranks = [f"{name}_{i}" for i in range(1, self.options.top_k + 1) for name in ("label", "index", "score")]
        tail = ["embedding_row"] if self.options.embeddings else []
        trust = ["ood_score", "out_of_distribution", *(["prediction_set"] if self.options.coverage is not None else [])]
        return ["path", "model", *ranks, *trust, "error_code", "error_message", *tail]

    def header(self) -> str:
        return self._lines([self.columns()])

    def parse(self, text: str) -> Iterator[DoneRow]:
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header != self.columns():
            raise ValueError(self._difference(header or []))
        for record in reader:
            values = dict(zip(header, record, strict=True))
            row = values.get("embedding_row") or None
            ok = not values["error_code"]
            yield DoneRow(values["path"], values["model"], ok, int(row) if row is not None else None)

    def _difference(self, header: list[str]) -> str:
        """Why ``header`` is not this run's, in the terms of the options."""
        if header[:2] != ["path", "model"]:
            return f"its first line is {header[:4]}, not this command's header"
        written_k = sum(1 for column in header if column.startswith("label_"))
        if written_k != self.options.top_k:
            return f"it was written with --top-k {written_k}, not {self.options.top_k}"
        if "ood_score" not in header:
            return "it was written by an older release (no ood_score column)"
        with_coverage = "prediction_set" in header
        if with_coverage != (self.options.coverage is not None):
            return f"it was written {'with' if with_coverage else 'without'} --coverage"
        with_embeddings = "embedding_row" in header
        return f"it was written {'with' if with_embeddings else 'without'} --embeddings"

    def render(self, rows: Sequence[ResultRow], first_embedding_row: int) -> str:
        records = []
        next_row = first_embedding_row
        blank = ["", "", ""] * self.options.top_k
        for row in rows:
            ranks = [str(v) for p in row.predictions for v in p]  # str(float) is the shortest exact repr
            ranks += blank[len(ranks) :]
            trust = [_text(row.ood_score), _text(row.out_of_distribution)]
            if self.options.coverage is not None:
                trust.append("|".join(row.prediction_set) if row.prediction_set is not None else "")
            record = [row.path, row.model, *ranks, *trust, row.error_code or "", row.error_message or ""]
            if self.options.embeddings:
                record.append(str(next_row) if row.embedding is not None else "")
                next_row += row.embedding is not None
            records.append(record)
        return self._lines(records)

    @staticmethod
    def _lines(records: list[list[str]]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(records)
        return buffer.getvalue()


class JsonlOutput(TextOutput):
    def parse(self, text: str) -> Iterator[DoneRow]:
        for line in text.splitlines():
            record = json.loads(line)
            yield DoneRow(record["path"], record["model"], "error" not in record, record.get("embedding_row"))

    def render(self, rows: Sequence[ResultRow], first_embedding_row: int) -> str:
        lines = []
        next_row = first_embedding_row
        for row in rows:
            record: dict[str, Any] = {"path": row.path, "model": row.model}
            if row.ok:
                record["predictions"] = [{"label": lb, "index": i, "score": s} for lb, i, s in row.predictions]
                record["ood_score"] = row.ood_score
                record["out_of_distribution"] = row.out_of_distribution
                if row.prediction_set is not None:
                    record["prediction_set"] = list(row.prediction_set)
            else:
                record["error"] = {"code": row.error_code, "message": row.error_message}
            if row.embedding is not None:
                record["embedding_row"] = next_row
                next_row += 1
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        return "".join(lines)


def _text(value: float | bool | None) -> str:
    """A CSV cell: empty for None, ``true``/``false`` for a flag, the shortest exact repr for a number."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

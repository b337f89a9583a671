"""Embeddings beside a CSV or JSONL output: one ``.npy`` matrix that grows a batch at a time.

The header is written with room for any row count and rewritten in place after each batch's rows are on disk, so
the file is a valid ``.npy`` (``numpy.load`` reads it, ``mmap_mode='r'`` too) at every moment: after a crash it holds
the rows whose header update landed, possibly followed by bytes of a torn batch that readers ignore. Each output row
names its embedding by ``embedding_row``, written after the embedding itself; on resume the matrix is cut back to
the rows the output references.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np

from app.batch.outputs.files import append_durably
from modelspec.files import fsync_path

MAGIC = b"\x93NUMPY\x01\x00"
HEADER_BYTES = 128  # the whole header, magic included: a multiple of 64, as the format asks; fits any shape here
DTYPE = np.dtype("<f4")


class NpyError(ValueError):
    """An embeddings file this command did not write, or one for another model."""


def _header(rows: int, dim: int) -> bytes:
    text = f"{{'descr': '{DTYPE.str}', 'fortran_order': False, 'shape': ({rows}, {dim}), }}"
    room = HEADER_BYTES - len(MAGIC) - 2
    body = text.encode("latin1").ljust(room - 1, b" ") + b"\n"
    return MAGIC + len(body).to_bytes(2, "little") + body


def read_shape(path: Path) -> tuple[int, int]:
    with path.open("rb") as handle:
        head = handle.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES or not head.startswith(MAGIC):
        raise NpyError(f"{path} is not an embeddings file written by this command; remove it or use --overwrite")
    fields = ast.literal_eval(head[len(MAGIC) + 2 :].decode("latin1").strip())
    rows, dim = fields["shape"]
    return int(rows), int(dim)


class NpyAppender:
    """Appends float32 rows of ``dim`` values to a ``.npy`` file, durably, a batch at a time."""

    def __init__(self, path: Path, dim: int, *, keep_rows: int | None = None) -> None:
        """Create the file, or (``keep_rows``, on resume) continue one, cut back to its first ``keep_rows``."""
        self.path = path
        self.dim = dim
        if keep_rows is None:
            self._handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            self.rows = 0
            self._commit()
            fsync_path(path.parent)
            return
        stored, stored_dim = read_shape(path)
        if stored_dim != dim or stored < keep_rows:
            raise NpyError(
                f"{path} holds {stored} embeddings of {stored_dim} values, but the output references {keep_rows} of "
                f"{dim}: it belongs to another run; use --overwrite to start over"
            )
        self._handle = os.open(path, os.O_RDWR)
        self.rows = keep_rows
        os.ftruncate(self._handle, HEADER_BYTES + keep_rows * dim * DTYPE.itemsize)
        self._commit()

    def append(self, vectors: np.ndarray) -> int:
        """Append ``vectors`` (n x dim) and return the row number of the first."""
        first = self.rows
        if len(vectors):
            data = np.ascontiguousarray(vectors, dtype=DTYPE)
            os.lseek(self._handle, HEADER_BYTES + first * self.dim * DTYPE.itemsize, os.SEEK_SET)
            append_durably(self._handle, data.tobytes(), self.path)
            self.rows += len(vectors)
            self._commit()
        return first

    def _commit(self) -> None:
        os.pwrite(self._handle, _header(self.rows, self.dim), 0)
        os.fsync(self._handle)

    def close(self) -> None:
        os.close(self._handle)

"""Where the rows go: a CSV, JSONL or Parquet file, chosen by the output's extension, written as the run goes.

Every format survives a crash or ``kill -9``: what was written stays readable (at most the batch being written is
lost) and ``--resume`` continues it. CSV and JSONL are appended in place, a batch at a time with ``fsync``; Parquet
keeps its footer at the end, so a killed writer would leave nothing readable: its rows go to small Parquet files in
``FILE.parts/`` and are assembled into ``FILE`` when the run completes (``app.batch.outputs.parquet``).
"""

from __future__ import annotations

from pathlib import Path

from app.batch.extras import available
from app.batch.outputs.base import Output, OutputError, Resumed, embeddings_path
from app.batch.outputs.files import remove
from app.batch.rows import RowOptions

__all__ = [
    "Output",
    "OutputError",
    "Resumed",
    "check_output",
    "embeddings_path",
    "format_of",
    "open_output",
]

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def format_of(path: Path) -> str:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise OutputError(f"cannot tell the format of {path}: name the output .csv, .jsonl or .parquet") from None


def side_files(path: Path) -> list[Path]:
    """Everything an output of this name may consist of besides the file itself."""
    return [embeddings_path(path), path.with_name(path.name + ".parts")]


def check_output(path: Path, *, resume: bool = False, overwrite: bool = False) -> str:
    """The output's format, once it is sure that the output may be written: an ``OutputError`` otherwise."""
    kind = format_of(path)
    existing = [p for p in (path, *side_files(path)) if p.exists()]
    if existing and not resume and not overwrite:
        raise OutputError(f"{existing[0]} exists: pass --resume to continue that run, or --overwrite to start over")
    if not path.parent.is_dir():
        raise OutputError(f"the folder {path.parent} does not exist; create it first")
    if kind == "parquet" and not available("pyarrow"):
        raise OutputError("Parquet output needs pyarrow: pip install 'imgclf[parquet]', or write .csv or .jsonl")
    return kind


def open_output(
    path: Path, options: RowOptions, embedding_size: int, *, resume: bool = False, overwrite: bool = False
) -> Output:
    """The output at ``path``: new, continued (``resume``), or replaced (``overwrite``); refuses to touch an
    existing one otherwise."""
    kind = check_output(path, resume=resume, overwrite=overwrite)
    if overwrite:
        for item in (path, *side_files(path)):
            if item.exists():
                remove(item)
    if kind == "parquet":
        from app.batch.outputs.parquet import ParquetOutput

        return ParquetOutput(path, options)
    from app.batch.outputs.text import CsvOutput, JsonlOutput

    text_output = CsvOutput if kind == "csv" else JsonlOutput
    return text_output(path, options, embedding_size)

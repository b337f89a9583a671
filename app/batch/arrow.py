"""Rows as Arrow tables: the Parquet output's schema, and how the Ray engine's actors hand rows to the driver.

Scores and embeddings are float32, the precision the model computes them in, so nothing is lost or invented.
Imported only where pyarrow is needed (Parquet output, the Ray engine): the serving install has no pyarrow.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from app.batch.rows import ResultRow


def schema(embeddings: bool, coverage: bool = False) -> pa.Schema:
    """The columns: ``prediction_set`` with a coverage, ``embedding`` with embeddings."""
    fields = [
        pa.field("path", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("labels", pa.list_(pa.string())),
        pa.field("indices", pa.list_(pa.int32())),
        pa.field("scores", pa.list_(pa.float32())),
        pa.field("ood_score", pa.float64()),
        pa.field("out_of_distribution", pa.bool_()),
        *([pa.field("prediction_set", pa.list_(pa.string()))] if coverage else []),
        pa.field("error_code", pa.string()),
        pa.field("error_message", pa.string()),
    ]
    if embeddings:
        fields.append(pa.field("embedding", pa.list_(pa.float32())))
    return pa.schema(fields)


def to_table(rows: Sequence[ResultRow], embeddings: bool, coverage: bool = False) -> pa.Table:
    columns: dict[str, pa.Array] = {
        "path": pa.array([row.path for row in rows], pa.string()),
        "model": pa.array([row.model for row in rows], pa.string()),
        "labels": pa.array(
            [[p[0] for p in row.predictions] if row.ok else None for row in rows], pa.list_(pa.string())
        ),
        "indices": pa.array(
            [[p[1] for p in row.predictions] if row.ok else None for row in rows], pa.list_(pa.int32())
        ),
        "scores": pa.array(
            [np.array([p[2] for p in row.predictions], np.float32) if row.ok else None for row in rows],
            pa.list_(pa.float32()),
        ),
        "ood_score": pa.array([row.ood_score for row in rows], pa.float64()),
        "out_of_distribution": pa.array([row.out_of_distribution for row in rows], pa.bool_()),
        "error_code": pa.array([row.error_code for row in rows], pa.string()),
        "error_message": pa.array([row.error_message for row in rows], pa.string()),
    }
    if embeddings:
        columns["embedding"] = pa.array(
            [None if row.embedding is None else np.asarray(row.embedding, np.float32) for row in rows],
            pa.list_(pa.float32()),
        )
    if coverage:
        columns["prediction_set"] = pa.array(
            [list(row.prediction_set) if row.prediction_set is not None else None for row in rows],
            pa.list_(pa.string()),
        )
    return pa.table(columns, schema=schema(embeddings, coverage))


def from_table(table: pa.Table) -> list[ResultRow]:
    data = table.drop_columns(["embedding"]).to_pydict() if "embedding" in table.column_names else table.to_pydict()
    vectors = _vectors(table) if "embedding" in table.column_names else [None] * table.num_rows
    rows = []
    for i in range(table.num_rows):
        labels, indices, scores = data["labels"][i], data["indices"][i], data["scores"][i]
        predictions = tuple(zip(labels, indices, scores, strict=True)) if labels is not None else ()
        code, message = data["error_code"][i], data["error_message"][i]
        members = data["prediction_set"][i] if "prediction_set" in data else None
        rows.append(
            ResultRow(
                data["path"][i],
                data["model"][i],
                predictions,
                code,
                message,
                vectors[i],
                ood_score=data["ood_score"][i],
                out_of_distribution=data["out_of_distribution"][i],
                prediction_set=tuple(members) if members is not None else None,
            )
        )
    return rows


def _vectors(table: pa.Table) -> list[np.ndarray | None]:
    """The embedding column as float32 arrays (views into one buffer), None where a row has none."""
    column = table.column("embedding").combine_chunks()
    if isinstance(column, pa.ChunkedArray):  # an empty table
        return []
    values = column.flatten().to_numpy(zero_copy_only=False)
    offsets = column.offsets.to_numpy()
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    start = offsets[0]
    return [
        values[a - start : b - start] if ok else None for a, b, ok in zip(offsets[:-1], offsets[1:], valid, strict=True)
    ]

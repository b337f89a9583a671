"""The end-of-run summary: images, errors by code, counts by top-1 label, images per second."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.batch.inputs import skipped_text
from app.batch.rows import ResultRow

TOP_LABELS = 10


@dataclass
class Summary:
    model: str
    engine: str
    output: str
    skipped: int = 0
    skipped_files: Counter[str] = field(default_factory=Counter)  # by extension: not images
    images: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    top1: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None

    def add(self, rows: Sequence[ResultRow]) -> None:
        self.images += len(rows)
        for row in rows:
            if row.error_code is not None:
                self.errors[row.error_code] += 1
            elif row.top1 is not None:
                self.top1[row.top1] += 1

    def finish(self) -> None:
        self.finished = time.perf_counter()

    @property
    def seconds(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def text(self) -> str:
        errors = sum(self.errors.values())
        lines = [
            f"{self.images:,} images in {self.seconds:.1f} s: {self.images_per_second:,.1f} img/s "
            f"({self.model}, {self.engine})",
            f"predicted: {self.images - errors:,}; errors: {errors:,}"
            + (f" ({', '.join(f'{code} {n:,}' for code, n in sorted(self.errors.items()))})" if errors else ""),
        ]
        if self.top1:
            common = self.top1.most_common(TOP_LABELS)
            rest = len(self.top1) - len(common)
            lines.append(
                "top-1 labels: "
                + ", ".join(f"{label} {n:,}" for label, n in common)
                + (f" (+{rest:,} other labels)" if rest > 0 else "")
            )
        if self.skipped_files:
            lines.append(f"{skipped_text(self.skipped_files)} (not image files by their extension)")
        if self.skipped:
            lines.append(f"skipped (already in the output): {self.skipped:,}")
        lines.append(f"output: {self.output}")
        return "\n".join(lines)

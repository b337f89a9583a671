"""The "## Explanations" section of BENCHMARKS.md, from one run's numbers."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from app.config import Settings
from scripts.bench.explain.measure import Cost, Round
from scripts.bench.machine import Machine
from scripts.bench.report import section_header

HEADING = "## Explanations"


@dataclass
class Report:
    started: str
    machine: Machine
    software: dict[str, str]
    settings: Settings
    model: str
    image_bytes: int
    client: str
    seconds: float
    cost: Cost
    rounds: list[Round]
    load_before: float
    load_after: float = 0.0


def render(report: Report) -> str:
    return "\n".join([*_header(report), *_cost(report), *_predict(report), *_reading(report)])


def _header(report: Report) -> list[str]:
    settings = report.settings
    return [
        *section_header(
            HEADING,
            "`make bench-explain` (`python -m scripts.bench.explain`, also run by `make bench`)",
            report.started,
            report.machine,
            f"; load average (1 min) {report.load_before:.2f} before the run and {report.load_after:.2f} after (the "
            "machine is shared: read the ratios, measured side by side).",
            report.software,
        ),
        f"- Model: `{report.model}`; image: scikit-image `chelsea` at 640x480, JPEG quality 90 "
        f"({report.image_bytes / 1024:.0f} KiB), as a raw `image/jpeg` body to `/v1/explain` and `/v1/predict`.",
        f"- Service: `python -m app` with default settings ({settings.resolved_intra_op_threads()} intra-op "
        f"threads, max batch {settings.max_batch_size}, `IMGCLF_EXPLAIN_CONCURRENCY={settings.explain_concurrency}`"
        f"). Predictions: {report.client}, closed loop, {report.seconds:g} s per window.",
        "",
    ]


def _cost(report: Report) -> list[str]:
    cost = report.cost
    grid = cost.grid
    passes_per_s = cost.forward_passes / cost.median_s
    return [
        "### One explanation (default grid)",
        "",
        f"{grid['rows']} x {grid['cols']} positions of a {grid['patch']} px grey window every {grid['stride']} px "
        f"on the {grid['crop_size']} px crop: {cost.forward_passes} forward passes (the whole image and each "
        f"occluded copy), in batches of {report.settings.max_batch_size}, on an otherwise idle service.",
        "",
        "| | median | runs |",
        "|---|---:|---|",
        f"| wall time (client) | **{cost.median_s:.2f} s** | {', '.join(f'{s:.2f}' for s in cost.seconds)} |",
        f"| service CPU time | {cost.median_cpu_s:.2f} s | {', '.join(f'{s:.2f}' for s in cost.cpu_seconds)} |",
        f"| forward passes per second | {passes_per_s:.0f} | |",
        "",
    ]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _predict(report: Report) -> list[str]:
    lines = [
        "### `/v1/predict` while an explanation runs",
        "",
        "Rounds alternate: predictions alone, then with explanations running back to back (one at a time, the "
        "default limit), or the other way round; each row is the median over its rounds.",
        "",
        "| predicting clients | rounds | p50 alone | p50 with an explanation | ratio | p90 alone / with "
        "| predictions/s alone / with | an explanation's wall time meanwhile |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for clients in sorted({r.clients for r in report.rounds}):
        rounds = [r for r in report.rounds if r.clients == clients]
        alone = _median([r.without.load.p50_ms for r in rounds])
        busy = _median([r.with_explanation.load.p50_ms for r in rounds])
        lines.append(
            f"| {clients} | {len(rounds)} | {alone:.1f} ms | {busy:.1f} ms | **{busy / alone:.2f}x** | "
            f"{_median([r.without.load.p90_ms for r in rounds]):.1f} / "
            f"{_median([r.with_explanation.load.p90_ms for r in rounds]):.1f} ms | "
            f"{_median([r.without.load.rate for r in rounds]):.1f} / "
            f"{_median([r.with_explanation.load.rate for r in rounds]):.1f} | "
            f"{_median([r.explanation_s for r in rounds]):.1f} s |"
        )
    errors = sum(r.without.load.non2xx + r.with_explanation.load.non2xx for r in report.rounds)
    lines += [
        "",
        "Each round (p50 alone -> with, load average): "
        + "; ".join(
            f"c={r.clients}: {r.without.load.p50_ms:.1f} -> {r.with_explanation.load.p50_ms:.1f} ms "
            f"({r.load_average:.2f})"
            for r in report.rounds
        )
        + f". Non-2xx answers to predictions: {errors}.",
        "",
    ]
    return lines


def _reading(report: Report) -> list[str]:
    alone = [r for r in report.rounds if r.clients == min(r.clients for r in report.rounds)]
    cpu_ms = _median([r.without.cpu_ms_per_request for r in alone])
    equivalent = report.cost.median_cpu_s * 1000 / cpu_ms if cpu_ms else float("nan")
    return [
        f"Reading it: one explanation costs about as much CPU as {equivalent:.0f} predictions of the same image "
        f"({cpu_ms:.1f} ms of service CPU per prediction at {alone[0].clients} client(s)). Its batches run on the "
        "backend's session for batches that run side by side (one intra-op thread on 2 cores), on threads of "
        "their own at a lower CPU priority (nice +10) and not through the prediction batcher: predictions never "
        "queue behind them and win a contended core. `IMGCLF_EXPLAIN_CONCURRENCY` bounds how many run at once "
        "(one more is answered 429 at once).",
        "",
    ]

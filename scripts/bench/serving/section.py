"""The "## Serving" section of BENCHMARKS.md, from one run's numbers: one function per subsection."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from app.config import Settings
from scripts.bench.machine import Machine
from scripts.bench.report import section_header
from scripts.bench.serving.inprocess import InProcess
from scripts.bench.serving.points import Pair, Point, RequestCost, SideBySide

HEADING = "## Serving"


@dataclass
class Report:
    started: str
    machine: Machine
    software: dict[str, str]
    settings: Settings
    model: str
    image_bytes: int
    client: str
    backend: str
    seconds: float
    in_process_seconds: float
    in_process: InProcess
    points: list[Point]
    pairs: list[Pair]
    startups_s: list[float]
    first_ms: list[float]
    large_jpeg: tuple[float, float]
    load_before: float
    load_after: float = 0.0
    others: list[Point] = field(default_factory=list)  # scenarios other than the primary one, batching on
    side_by_side: list[SideBySide] = field(default_factory=list)  # A/B: the primary and another scenario at once
    costs: list[RequestCost] = field(default_factory=list)  # server CPU per request, the primary scenario first
    scenarios: dict[str, tuple[str, float | None]] = field(default_factory=dict)  # name -> (what it sends, target)

    @property
    def limit(self) -> float:
        return self.in_process.limit[2].images_per_second


def render(report: Report) -> str:
    lines = [
        *_header(report),
        *_in_process(report),
        *_over_http(report),
        *_other_scenarios(report),
        *_side_by_side(report),
        *_paired(report),
        *_targets(report),
    ]
    return "\n".join(lines)


def _header(report: Report) -> list[str]:
    settings = report.settings
    overrides = ", ".join(f"`{k}={v}`" for k, v in sorted(os.environ.items()) if k.startswith("IMGCLF_"))
    return [
        *section_header(
            HEADING,
            "`make bench` (`python -m scripts.bench.serving`)",
            report.started,
            report.machine,
            f"; load average (1 min) {report.load_before:.2f} before the run and {report.load_after:.2f} after "
            "(other work shares this machine: compare numbers from the same run, as ratios).",
            report.software,
        ),
        f"- Model: `{report.model}` (EfficientNet-Lite0, ImageNet) on the service's backend: {report.backend}. "
        "Image: scikit-image "
        f"`chelsea` resized to 640x480, JPEG quality 90 ({report.image_bytes / 1024:.0f} KiB), posted to "
        "`/v1/predict` as a raw `image/jpeg` body.",
        f"- Service: `python -m app` with {overrides or 'default settings'}: {settings.workers} worker, "
        f"{settings.resolved_intra_op_threads()} intra-op threads, {settings.resolved_decode_threads()} decode "
        f"threads, max batch {settings.max_batch_size}, max wait {settings.max_batch_wait_ms:g} ms. Load: "
        f"{report.client}, closed loop, {report.seconds:g} s per point after a 2 s warm-up at the same concurrency.",
        "",
    ]


def _in_process(report: Report) -> list[str]:
    options, batch, _ = report.in_process.limit
    single_options, single_ms = report.in_process.best_single
    return [
        "### In-process limit (no HTTP)",
        "",
        f"{report.settings.resolved_decode_threads()} threads decode and preprocess the JPEG while one or more "
        "inference threads run batches through the model: the service's own backend and session options, and a "
        "plain ONNX Runtime session with its default options (spinning thread pool) as the reference setup used.",
        "",
        "| arrangement | batch | img/s | CPU ms/img |",
        "|---|---:|---:|---:|",
        *(
            f"| {o} | {b} | {r.images_per_second:.1f} | {r.cpu_ms_per_image:.1f} |"
            for o, b, r in report.in_process.rows
        ),
        "",
        f"**In-process limit: {report.limit:.1f} img/s** ({options}, batch {batch}). Single image (decode + "
        f"preprocess + forward, batch 1): **{single_ms:.2f} ms** ({single_options}); decode + preprocess alone "
        f"{report.in_process.decode_ms:.2f} ms.",
        "",
    ]


def _points_table(report: Report, first: tuple[str, Callable[[Point], str]], points: list[Point]) -> list[str]:
    """One row per load point; ``first`` names the first column and what it shows of a point."""
    title, cell = first
    header = (
        f"| {title} | clients | img/s | % of limit | p50 ms | p90 ms | p99 ms | errors | mean batch | queue wait ms "
        "| inference ms | server CPU | CPU ms/img | load 1m |"
    )
    rows = []
    for point in points:
        load = point.load
        rows.append(
            f"| {cell(point)} | {point.clients} | {load.rate:.1f} | {load.rate / report.limit:.0%} | "
            f"{load.p50_ms:.1f} | {load.p90_ms:.1f} | {load.p99_ms:.1f} | {load.non2xx + load.socket_errors} | "
            f"{point.mean_batch:.1f} | {point.mean_queue_wait_ms:.1f} | {point.mean_inference_ms:.1f} | "
            f"{point.server_cpu:.2f} | {point.cpu_ms_per_image:.1f} | {point.load_average:.2f} |"
        )
    return [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", *rows]


def _over_http(report: Report) -> list[str]:
    batching = ("batching", lambda p: "on" if p.batching else "off")
    return [
        "### Over HTTP",
        "",
        "img/s = successful responses per second (one image each); % = of the in-process limit above; errors = "
        "non-2xx responses + socket errors; mean batch, queue wait and inference (per batch) come from the "
        "service's own Prometheus histograms over the measured interval; server CPU = cores busy on average, and "
        "CPU ms/img the server's CPU time per image (the efficiency figure that other work on the machine disturbs "
        "least).",
        "",
        *_points_table(report, batching, report.points),
        "",
    ]


def _other_scenarios(report: Report) -> list[str]:
    if not report.others:
        return []
    scenario = ("scenario", lambda p: f"`{p.scenario}`")
    intro = "The same service (batching on) and columns as above, under other requests (`serving/scenarios.py`):"
    names = dict.fromkeys(p.scenario for p in report.others)
    described = [f"- `{name}`: {report.scenarios.get(name, ('', None))[0]}" for name in names]
    table = _points_table(report, scenario, report.others)
    return ["### Other load scenarios", "", intro, "", *described, "", *table, ""]


def _side_by_side(report: Report) -> list[str]:
    if not report.side_by_side:
        return []
    return [*_side_by_side_runs(report), *_request_costs(report)]


def _request_costs(report: Report) -> list[str]:
    if not report.costs:
        return []
    primary = report.costs[0]
    blocks = len(primary.cpu_ms)
    return [
        f"Server CPU time per request, each scenario sent one request at a time on one connection, in {blocks} "
        "interleaved blocks (a request's CPU time depends little on the background load; it is what a request "
        "costs):",
        "",
        f"| scenario | CPU ms per request (median) | vs `{primary.scenario}` | per block |",
        "|---|---:|---:|---|",
        *(
            f"| `{cost.scenario}` | {cost.median_ms:.2f} | {cost.median_ms / primary.median_ms:.2f}x | "
            f"{', '.join(f'{value:.1f}' for value in cost.cpu_ms)} |"
            for cost in report.costs
        ),
        "",
    ]


def _side_by_side_runs(report: Report) -> list[str]:
    first = report.side_by_side[0]
    primary = first.primary
    seconds = first.primary_load.seconds
    rows = [
        f"| {number} | `{s.other}` | {s.primary_load.rate:.1f} | {s.other_load.rate:.1f} | {s.ratio:.0%} | "
        f"{s.primary_load.p50_ms:.1f} | {s.other_load.p50_ms:.1f} | "
        f"{s.primary_load.non2xx + s.other_load.non2xx + s.primary_load.socket_errors + s.other_load.socket_errors} "
        f"| {s.load_average:.2f} |"
        for number, s in enumerate(report.side_by_side, 1)
    ]
    return [
        "### Scenarios side by side (A/B)",
        "",
        f"Each row loads the service with `{primary}` and another scenario at the same time, 8 clients each (16 in "
        f"all), for {seconds:.0f} s after a warm-up: both meet the same server, batches and background "
        "load, so the ratio of their throughputs is the ratio of what a request costs, even on a busy machine.",
        "",
        f"| run | scenario | `{primary}` img/s | scenario img/s | % of `{primary}` | `{primary}` p50 ms | "
        "scenario p50 ms | errors | load 1m |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ]


def _paired(report: Report) -> list[str]:
    if not report.pairs:
        return []
    options, batch, _ = report.in_process.limit
    return [
        "### Paired check at 16 clients",
        "",
        f"The background load on a shared machine drifts between the sections above, so the best in-process "
        f"arrangement ({options}, batch {batch}) and the service at 16 clients were also run alternately, "
        f"{report.in_process_seconds:g} s and {report.seconds / 2:g} s at a time:",
        "",
        "| round | in-process img/s | HTTP c=16 img/s | HTTP / in-process | in-process CPU ms/img "
        "| server CPU ms/img | load 1m |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {i} | {pair.in_process.images_per_second:.1f} | {pair.http.load.rate:.1f} | {pair.ratio:.0%} | "
            f"{pair.in_process.cpu_ms_per_image:.1f} | {pair.http.cpu_ms_per_image:.1f} | "
            f"{pair.http.load_average:.2f} |"
            for i, pair in enumerate(report.pairs, 1)
        ),
        "",
    ]


def _targets(report: Report) -> list[str]:
    lines = ["### Targets", "", *_target_lines(report)]
    worst = max(report.points, key=lambda p: p.clients)
    errors = worst.load.non2xx + worst.load.socket_errors
    lines += [
        f"- Errors at c={worst.clients}: {errors} "
        f"(non-2xx {worst.load.non2xx}, socket {worst.load.socket_errors}); errors over all points: "
        f"{sum(p.load.non2xx + p.load.socket_errors for p in report.points)}.",
        "- Batcher metrics under load (`imgclf_images_total` over each measured interval vs responses counted by the "
        "load generator; requests in flight at the end make them differ by up to the client count): "
        + ", ".join(
            f"{'on' if p.batching else 'off'} c={p.clients}: {p.images_counted:.0f}/{p.load.requests}"
            for p in report.points
        )
        + ".",
        f"- 4000x3000 JPEG, decode + preprocess: **{report.large_jpeg[0]:.1f} ms** with `draft` (DCT scaling), "
        f"{report.large_jpeg[1]:.1f} ms without.",
        f"- Start-up to ready (`python -m app` start to `/health/ready` 200, bundle already built), median of "
        f"{len(report.startups_s)} starts: **{statistics.median(report.startups_s):.2f} s** "
        f"({', '.join(f'{s:.2f}' for s in report.startups_s)}; target < 3 s).",
        f"- Warm-up: the first request after ready took {report.first_ms[0]:.1f} ms, the median of the next "
        f"{len(report.first_ms) - 1} {statistics.median(report.first_ms[1:]):.1f} ms (sequential, one connection).",
        "",
    ]
    return lines


def _target_lines(report: Report) -> list[str]:
    """The three targets: c=16 against the limit, the paired ratio and a lone request against in-process."""
    on = {p.clients: p for p in report.points if p.batching}
    lines = []
    c16 = on.get(16)
    if c16 is not None:
        ratio = c16.load.rate / report.limit
        lines.append(
            f"- c=16 throughput: {c16.load.rate:.1f} img/s = **{ratio:.0%}** of the in-process limit "
            f"(target >= 90%): {_met(ratio >= 0.9)}."
        )
    if report.pairs:
        paired = statistics.median(pair.ratio for pair in report.pairs)
        efficiency = statistics.median(
            pair.in_process.cpu_ms_per_image / pair.http.cpu_ms_per_image for pair in report.pairs
        )
        lines.append(
            f"- Paired rounds: HTTP at 16 clients = **{paired:.0%}** of the in-process rate measured beside it "
            f"(median of {len(report.pairs)}): {_met(paired >= 0.9)}. CPU efficiency (in-process "
            f"CPU ms per image / the server's): {efficiency:.0%}."
        )
    lines += _side_by_side_targets(report)
    c1 = on.get(1)
    if c1 is not None:
        single_ms = report.in_process.best_single[1]
        gap = c1.load.p50_ms - single_ms
        lines.append(
            f"- Single request: c=1 p50 {c1.load.p50_ms:.2f} ms vs in-process {single_ms:.2f} ms: "
            f"**{gap:+.2f} ms** (target within 3 ms): {_met(gap <= 3)}."
        )
    return lines


def _side_by_side_targets(report: Report) -> list[str]:
    """Each other scenario's throughput as a share of the primary one's, the median of its side-by-side runs."""
    by_scenario: dict[str, list[SideBySide]] = {}
    for run in report.side_by_side:
        by_scenario.setdefault(run.other, []).append(run)
    lines = []
    for name, runs in by_scenario.items():
        ratio = statistics.median(run.ratio for run in runs)
        target = report.scenarios.get(name, ("", None))[1]
        judged = f"; target >= {target:.0%}): {_met(ratio >= target)}" if target is not None else ")"
        costs = {cost.scenario: cost.median_ms for cost in report.costs}
        cost = f"; {costs[name] / costs[runs[0].primary]:.2f}x its CPU per request" if name in costs else ""
        lines.append(
            f"- `{name}` beside `{runs[0].primary}`, 8 clients each: **{ratio:.0%}** of its throughput "
            f"(median of {len(runs)} runs: {', '.join(f'{run.ratio:.0%}' for run in runs)}{judged}{cost}."
        )
    return lines


def _met(met: bool) -> str:
    return "met" if met else "NOT met"

"""``python -m scripts.bench.serving.precision --bundle DIR``: fp32, int8 and a same-runtime peer in one run.

Three servers run side by side on one bundle: the service with ``IMGCLF_PRECISION=fp32``, the service with
``IMGCLF_PRECISION=int8``, and a minimal KServe ``ModelServer`` custom model on ONNX Runtime serving the same
``model.onnx`` with the same preprocessing (``scripts.bench.peer``). They are loaded in alternating rounds (the order
rotating each round), so the background load of a shared machine falls on all three alike: each round measures a
lone client (c=1 p50) and 16 clients (throughput and the server's CPU time per image). The in-process limit (decode
threads and the model's batches, no HTTP) of fp32 and int8 is measured in alternating rounds too. The section
("## Serving: fp32, int8 and a peer") reports medians and the ratios the issue's targets are about.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from app.config import Settings
from app.engine.backends.base import usual_batch_sizes
from app.engine.precision import choose_precision
from modelspec import Bundle, read_bundle
from modelspec.decode import load_input
from scripts.bench import ROOT
from scripts.bench.images import test_jpeg
from scripts.bench.load import Load, LoadGenerator, Request, load_generator
from scripts.bench.machine import Machine, load_average, software, this_machine
from scripts.bench.report import publish, section_header
from scripts.bench.serving.inprocess import LIMITS, InProcessBench, median_ms
from scripts.bench.serving.service import Server, free_port, http_get, serve, stop

HEADING = "## Serving: fp32, int8 and a peer"
SOFTWARE = ("onnxruntime", "numpy", "pillow", "fastapi", "uvicorn", "kserve")
PRECISIONS = ("fp32", "int8")
PEER = "KServe peer"
WARM_UP_S = 1.0


@dataclass
class Sample:
    """One contender in one round."""

    c1: Load
    c16: Load
    cpu_ms_per_image: float  # the server process's CPU time per image at 16 clients
    load_average: float


@dataclass
class Limit:
    images_per_second: list[float] = field(default_factory=list)  # the best arrangement, one value per round
    single_ms: list[float] = field(default_factory=list)  # decode + preprocess + forward of one image


@dataclass
class Results:
    samples: dict[str, list[Sample]] = field(default_factory=dict)  # contender -> one per round
    limits: dict[str, Limit] = field(default_factory=dict)  # precision -> in-process
    auto_reason: str = ""
    served: dict[str, str] = field(default_factory=dict)  # contender -> the precision it reports, and why


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@contextlib.contextmanager
def serve_peer(bundle_dir: Path, log_dir: Path) -> Iterator[Server]:
    """The KServe peer on a free port until the block ends (its log in ``log_dir/server-peer.log``)."""
    port = free_port()
    log = log_dir / "server-peer.log"
    command = [sys.executable, "-m", "scripts.bench.peer.kserve_server", str(bundle_dir)]
    command += ["--http_port", str(port), "--enable_grpc", "false"]
    with log.open("wb") as sink:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=sink)
        try:
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"the KServe peer exited with {process.returncode}; see {log}")
                with contextlib.suppress(OSError):
                    if http_get(port, "/v1/models/peer", timeout=1.0)[0] == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit(f"the KServe peer was not ready after 120 s; see {log}")
                time.sleep(0.05)
            yield Server(process, port, time.perf_counter() - started, log)
        finally:
            stop(process, grace=15)


def measure(server: Server, request: Request, generate: LoadGenerator, seconds: float) -> Sample:
    """A lone client, then 16, each after a short warm-up at the same concurrency."""
    generate(server.port, request, 1, WARM_UP_S)
    c1 = generate(server.port, request, 1, seconds)
    generate(server.port, request, 16, WARM_UP_S)
    average = load_average()
    cpu_before, wall_before = server.cpu_seconds(), time.perf_counter()
    c16 = generate(server.port, request, 16, seconds)
    cpu = server.cpu_seconds() - cpu_before
    time.sleep(0.5)  # wrk leaves requests in flight at the end: let them finish before the next contender starts
    cpu_ms = cpu * 1000 / max(1, c16.requests)
    print(
        f"  c=1 p50 {c1.p50_ms:.2f} ms; c=16 {c16.rate:.1f} img/s, {cpu_ms:.1f} CPU ms/img "
        f"(non-2xx {c1.non2xx + c16.non2xx}, {time.perf_counter() - wall_before:.0f} s, load {average:.2f})",
        flush=True,
    )
    return Sample(c1, c16, cpu_ms, average)


def in_process_limit(bundle: Bundle, image: bytes, precision: str, seconds: float, limit: Limit) -> None:
    """The service's own arrangements at batch 8 and 16 (the best kept), and one image alone."""
    settings = Settings(models_dir=bundle.path.parent.parent, precision=precision)  # type: ignore[arg-type]
    bench = InProcessBench(bundle, image, settings)
    try:
        service = [name for name in bench.runners if name.startswith("service")]
        rates = [bench.rate(name, size, seconds).images_per_second for name in service for size in (8, 16)]
        limit.images_per_second.append(max(rates))
        run = bench.backend.run_alone
        prep = bundle.spec.preprocessing
        limit.single_ms.append(median_ms(lambda: run(load_input(image, prep, LIMITS)[None]), 40))
        print(
            f"  in-process {precision}: {max(rates):.1f} img/s, one image {limit.single_ms[-1]:.2f} ms "
            f"(load {load_average():.2f})",
            flush=True,
        )
    finally:
        bench.close()


def auto_choice(bundle: Bundle) -> str:
    """What ``IMGCLF_PRECISION=auto`` chooses for this bundle here, and why (the load-time measurement)."""
    settings = Settings(models_dir=bundle.path.parent.parent)
    sizes = tuple(sorted(usual_batch_sizes(settings.max_batch_size)))
    return choose_precision(settings, bundle, settings.resolved_intra_op_threads(), sizes).reason


def run_rounds(bundle: Bundle, image: bytes, generate: LoadGenerator, args: argparse.Namespace, work: Path) -> Results:
    results = Results(auto_reason=auto_choice(bundle))
    print(f"auto: {results.auto_reason}", flush=True)
    for round_ in range(args.rounds):
        for precision in PRECISIONS if round_ % 2 == 0 else reversed(PRECISIONS):
            limit = results.limits.setdefault(precision, Limit())
            in_process_limit(bundle, image, precision, args.in_process_seconds, limit)
    models_dir, name = bundle.path.parent.parent, bundle.name
    ours = Request(f"/v1/models/{name}/predict", image, "image/jpeg")
    peer = Request("/v1/models/peer:predict", image, "image/jpeg")
    with contextlib.ExitStack() as stack:
        servers: dict[str, tuple[Server, Request]] = {}
        for precision in PRECISIONS:
            server = stack.enter_context(
                serve(models_dir, name, {"IMGCLF_PRECISION": precision}, work, f"precision-{precision}")
            )
            detail = json.loads(http_get(server.port, f"/v1/models/{name}")[1])
            results.served[f"imgclf {precision}"] = f"{detail['precision']} ({detail['precision_reason']})"
            servers[f"imgclf {precision}"] = (server, ours)
        servers[PEER] = (stack.enter_context(serve_peer(bundle.path, work)), peer)
        names = list(servers)
        for round_ in range(args.rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for contender in order:
                print(f"round {round_ + 1}, {contender}:", flush=True)
                server, request = servers[contender]
                results.samples.setdefault(contender, []).append(measure(server, request, generate, args.seconds))
    return results


@dataclass
class Report:
    started: str
    machine: Machine
    software: dict[str, str]
    bundle: Bundle
    bundle_note: str
    image_bytes: int
    client: str
    seconds: float
    in_process_seconds: float
    results: Results
    load_before: float
    load_after: float


def render(report: Report) -> str:
    results = report.results
    record = report.bundle.spec.quantization
    lines = [
        *section_header(
            HEADING,
            "`make bench` (`python -m scripts.bench.serving.precision`)",
            report.started,
            report.machine,
            f"; load average (1 min) {report.load_before:.2f} before and {report.load_after:.2f} after: other work "
            "shares this machine, so read the ratios between contenders of the same round, not the absolute rates.",
            report.software,
        ),
        f"- Bundle: `{report.bundle.name}` version `{report.bundle.version}` "
        f"({report.bundle.spec.architecture.name}, {report.bundle.spec.preprocessing.crop_size} px): "
        f"{report.bundle_note}. Its int8 record: {record.reason if record else 'none'}.",
        f"- Image: a 640x480 JPEG ({report.image_bytes / 1024:.0f} KiB) as a raw `image/jpeg` body. Load: "
        f"{report.client}, closed loop, {report.seconds:g} s per point after a {WARM_UP_S:g} s warm-up.",
        "- Contenders: the service (`python -m app`, default settings) with `IMGCLF_PRECISION=fp32` and `=int8`, "
        "and a KServe `ModelServer` custom model (`scripts/bench/peer/kserve_server.py`: ONNX Runtime defaults, "
        "the bundle's fp32 `model.onnx`, the same `modelspec` preprocessing, decode and forward pass in a thread per "
        "request, no batching), all three running at once and loaded in turn, the order rotating each round.",
        f"- `IMGCLF_PRECISION=auto` chose here, at load: {results.auto_reason}",
        *(f"- {contender} reported (`/v1/models`): {served}" for contender, served in results.served.items()),
        "",
        "| contender | in-process limit img/s | in-process one image ms | HTTP c=1 p50 ms | HTTP c=16 img/s "
        "| server CPU ms/img at c=16 | c=16 vs imgclf fp32 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    fp32_rate = median([s.c16.rate for s in results.samples["imgclf fp32"]])
    for contender, samples in results.samples.items():
        limit = results.limits.get(contender.removeprefix("imgclf "))
        rate = median([s.c16.rate for s in samples])
        lines.append(
            f"| {contender} | {_cell(limit.images_per_second if limit else [], '.1f')} | "
            f"{_cell(limit.single_ms if limit else [], '.2f')} | {median([s.c1.p50_ms for s in samples]):.2f} | "
            f"{rate:.1f} | {median([s.cpu_ms_per_image for s in samples]):.1f} | {rate / fp32_rate:.2f}x |"
        )
    lines += ["", "Medians over the rounds. Each round:", "", *_rounds_table(results), "", *_targets(results), ""]
    return "\n".join(lines)


def _cell(values: Sequence[float], fmt: str) -> str:
    return format(median(values), fmt) if values else "-"


def _rounds_table(results: Results) -> list[str]:
    rows = [
        "| round | contender | c=1 p50 ms | c=16 img/s | CPU ms/img | non-2xx | load 1m |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    rounds = max(len(samples) for samples in results.samples.values())
    for index in range(rounds):
        for contender, samples in results.samples.items():
            s = samples[index]
            rows.append(
                f"| {index + 1} | {contender} | {s.c1.p50_ms:.2f} | {s.c16.rate:.1f} | {s.cpu_ms_per_image:.1f} | "
                f"{s.c1.non2xx + s.c16.non2xx + s.c1.socket_errors + s.c16.socket_errors} | {s.load_average:.2f} |"
            )
    return rows


def _paired(results: Results, a: str, b: str, metric: str) -> list[float]:
    """Round by round, ``a``'s metric over ``b``'s (the same round's background load)."""
    pairs = zip(results.samples[a], results.samples[b], strict=True)
    if metric == "rate":
        return [x.c16.rate / y.c16.rate for x, y in pairs]
    return [x.c1.p50_ms / y.c1.p50_ms for x, y in pairs]


def _targets(results: Results) -> list[str]:
    def line(text: str, values: list[float], met: bool) -> str:
        each = ", ".join(f"{value:.2f}" for value in values)
        return f"- {text}: **{median(values):.2f}x** (rounds: {each}): {'met' if met else 'NOT met'}."

    int8_rate = _paired(results, "imgclf int8", "imgclf fp32", "rate")
    int8_p50 = _paired(results, "imgclf int8", "imgclf fp32", "p50")
    peer_rate = _paired(results, "imgclf int8", PEER, "rate")
    peer_p50 = _paired(results, "imgclf int8", PEER, "p50")
    fp32_peer = _paired(results, "imgclf fp32", PEER, "rate")
    int8_limit, fp32_limit = results.limits["int8"].images_per_second, results.limits["fp32"].images_per_second
    in_process = [i / f for i, f in zip(int8_limit, fp32_limit, strict=True)]
    return [
        "### Targets (issue 17), as ratios within each round",
        "",
        line("int8 / fp32 HTTP throughput at 16 clients (target >= 1.5x)", int8_rate, median(int8_rate) >= 1.5),
        line("int8 / fp32 c=1 p50 (target <= 0.7x)", int8_p50, median(int8_p50) <= 0.7),
        line("int8 / fp32 in-process limit", in_process, True).removesuffix(": met."),
        line(f"imgclf int8 / {PEER} throughput at 16 clients (target >= 1.5x)", peer_rate, median(peer_rate) >= 1.5),
        line(f"imgclf int8 / {PEER} c=1 p50 (target < 1x)", peer_p50, median(peer_p50) < 1.0),
        line(f"imgclf fp32 / {PEER} throughput at 16 clients", fp32_peer, True).removesuffix(": met."),
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="a bundle folder with model.int8.onnx")
    parser.add_argument("--bundle-note", default="a trained bundle", help="what the bundle is, for the report")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per HTTP point")
    parser.add_argument("--in-process-seconds", type=float, default=2.0)
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="'-' prints instead")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    bundle = read_bundle(args.bundle.resolve())
    record = bundle.spec.quantization
    if record is None or record.file is None:
        raise SystemExit(
            f"{args.bundle} has no int8 graph: python -m training quantize {args.bundle} "
            "(--unlabelled --min-agreement 0 for a speed-only bundle of an ImageNet model)"
        )
    image = test_jpeg((640, 480))
    machine = this_machine()
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = load_average()
    print(f"fp32 / int8 / peer: {bundle.name} v{bundle.version}, load {load_before:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="imgclf-bench-precision-") as tmp:
        generate = load_generator(args.client, Path(tmp))
        results = run_rounds(bundle, image, generate, args, Path(tmp))
    report = Report(
        started=started,
        machine=machine,
        software=software(SOFTWARE, tools=("wrk",)),
        bundle=bundle,
        bundle_note=args.bundle_note,
        image_bytes=len(image),
        client=generate.description,
        seconds=args.seconds,
        in_process_seconds=args.in_process_seconds,
        results=results,
        load_before=load_before,
        load_after=load_average(),
    )
    publish(render(report), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

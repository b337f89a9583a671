"""``python -m scripts.bench.serving``: run the serving benchmark and write its section of BENCHMARKS.md."""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from app.config import Settings
from modelspec import Bundle, list_models, read_bundle
from scripts.bench import ROOT
from scripts.bench.images import test_jpeg
from scripts.bench.load import LoadGenerator, Request, load_generator
from scripts.bench.machine import load_average, software, this_machine
from scripts.bench.report import publish
from scripts.bench.serving import __doc__ as description
from scripts.bench.serving.inprocess import InProcess, InProcessBench, large_jpeg_ms
from scripts.bench.serving.points import (
    Pair,
    Point,
    RequestCost,
    SideBySide,
    measure_pairs,
    measure_point,
    measure_request_costs,
    measure_side_by_side,
)
from scripts.bench.serving.scenarios import ALSO, PRIMARY, Scenario
from scripts.bench.serving.section import Report, render
from scripts.bench.serving.service import Server, first_requests_ms, serve

SOFTWARE = ("onnxruntime", "numpy", "pillow", "fastapi", "starlette", "uvicorn", "uvloop", "httptools")
STARTUPS = 3  # start-up alone, a few times: one start is at the mercy of the background load


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(description or "").split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per HTTP load point")
    parser.add_argument("--in-process-seconds", type=float, default=3.0, help="seconds per in-process point")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(PRIMARY.concurrency))
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--no-batching-off", action="store_true", help="skip the runs with batching off")
    parser.add_argument(
        "--pairs", type=int, default=3, help="alternating in-process / HTTP c=16 rounds for the noise-robust ratio"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="'-' prints instead")
    return parser.parse_args(argv)


def find_bundle(models_dir: Path, name: str) -> Bundle:
    versions_on_disk = list_models(models_dir).get(name)
    if not versions_on_disk:
        raise SystemExit(
            f"no bundle {name!r} in {models_dir}; build it with: "
            f"python -m training export-pretrained efficientnet_lite0 --models-dir {models_dir}"
        )
    return read_bundle(models_dir / name / str(max(versions_on_disk)))


@dataclass
class HttpResults:
    points: list[Point] = field(default_factory=list)  # the primary scenario, batching on and off
    others: list[Point] = field(default_factory=list)  # the other scenarios, batching on
    pairs: list[Pair] = field(default_factory=list)
    side_by_side: list[SideBySide] = field(default_factory=list)  # rounds of the primary and each other at once
    costs: list[RequestCost] = field(default_factory=list)  # server CPU per request, each scenario
    startups_s: list[float] = field(default_factory=list)
    first_ms: list[float] = field(default_factory=lambda: [0.0])


@dataclass(frozen=True)
class HttpRun:
    """What the HTTP part sends, to which model, with what, and for how long."""

    models_dir: Path
    model: str
    image: bytes
    primary: Scenario
    others: tuple[Scenario, ...]
    generate: LoadGenerator
    seconds: float
    batching_off: bool
    pairs: int
    in_process_seconds: float

    def request(self, scenario: Scenario) -> Request:
        return scenario.request(self.model, self.image)

    def point(self, server: Server, scenario: Scenario, batching: bool, clients: int) -> Point:
        request = self.request(scenario)
        return measure_point(server, scenario.name, request, batching, clients, self.seconds, self.generate)


def measure_http(run: HttpRun, work: Path, bench: InProcessBench, in_process: InProcess) -> HttpResults:
    """Start-up, then the service with batching on (and off) at each concurrency of each scenario, and the paired
    rounds with batching on."""
    results = HttpResults()
    for attempt in range(STARTUPS):
        with serve(run.models_dir, run.model, {}, work, f"startup-{attempt}") as server:
            results.startups_s.append(server.startup_s)
            if attempt == 0:
                results.first_ms = first_requests_ms(server, run.request(run.primary))
    print(f"start-up to ready: {', '.join(f'{s:.2f}' for s in results.startups_s)} s", flush=True)
    for batching in [True, False] if run.batching_off else [True]:
        env = {} if batching else {"IMGCLF_BATCHING": "false"}
        label = "batching-on" if batching else "batching-off"
        with serve(run.models_dir, run.model, env, work, label) as server:
            print(f"service ({label}): ready after {server.startup_s:.2f} s", flush=True)
            results.points += [run.point(server, run.primary, batching, c) for c in run.primary.concurrency]
            if batching:
                results.others += [run.point(server, s, True, c) for s in run.others for c in s.concurrency]
            if batching and run.pairs and run.others:
                primary = (run.primary.name, run.request(run.primary))
                results.side_by_side = [
                    measure_side_by_side(server, primary, (s.name, run.request(s)), run.generate, run.seconds)
                    for _ in range(run.pairs)
                    for s in run.others
                ]
                results.costs = measure_request_costs(
                    server, [primary, *((s.name, run.request(s)) for s in run.others)]
                )
            if batching and run.pairs:
                results.pairs = measure_pairs(
                    bench, in_process, server, run.primary.name, run.request(run.primary), run.generate, run.pairs,
                    run.in_process_seconds, run.seconds / 2,
                )  # fmt: skip
    return results


def describe_backend(bench: InProcessBench, settings: Settings) -> str:
    text = f"{bench.backend.name} on {bench.backend.device}"
    if bench.backend.name == "torch":
        text += f" ({'fp16' if settings.fp16 and bench.backend.device.startswith('cuda') else 'fp32'})"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.models_dir = args.models_dir.resolve()
    bundle = find_bundle(args.models_dir, args.model)
    settings = Settings(models_dir=args.models_dir)
    image = test_jpeg((640, 480))
    machine = this_machine()
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = load_average()
    print(f"imgclf serving benchmark: {machine.cpu}, {machine.cores} cores, load {load_before:.2f}", flush=True)

    with tempfile.TemporaryDirectory(prefix="imgclf-bench-") as tmp:
        work = Path(tmp)
        run = HttpRun(
            models_dir=args.models_dir,
            model=args.model,
            image=image,
            primary=dataclasses.replace(PRIMARY, concurrency=tuple(args.concurrency)),
            others=ALSO,
            generate=load_generator(args.client, work),
            seconds=args.seconds,
            batching_off=not args.no_batching_off,
            pairs=args.pairs,
            in_process_seconds=args.in_process_seconds,
        )
        print("in-process:", flush=True)
        bench = InProcessBench(bundle, image, settings)
        in_process = bench.sweep(args.in_process_seconds)
        large = large_jpeg_ms(bundle.spec.preprocessing)
        print(f"  4000x3000 JPEG: {large[0]:.1f} ms with draft, {large[1]:.1f} ms without", flush=True)
        http = measure_http(run, work, bench, in_process)
        bench.close()

    report = Report(
        started=started,
        machine=machine,
        software=software(SOFTWARE, tools=("wrk",)),
        settings=settings,
        model=f"{bundle.name}` version `{bundle.version}",
        image_bytes=len(image),
        client=run.generate.description,
        backend=describe_backend(bench, settings),
        seconds=args.seconds,
        in_process_seconds=args.in_process_seconds,
        in_process=in_process,
        points=http.points,
        others=http.others,
        pairs=http.pairs,
        side_by_side=http.side_by_side,
        costs=http.costs,
        scenarios={s.name: (s.description, s.target) for s in (run.primary, *run.others)},
        startups_s=http.startups_s,
        first_ms=http.first_ms,
        large_jpeg=large,
        load_before=load_before,
        load_after=load_average(),
    )
    publish(render(report), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m scripts.bench.batch``: the batch command over 2,000 photos against the in-process limit and against
the service at 16 clients on the same photos, in rounds of one run; writes the "## Batch" section of BENCHMARKS.md."""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from app.config import Settings
from modelspec import Preprocessing
from modelspec.decode import DecodeLimits, load_input
from scripts.bench import ROOT
from scripts.bench.batch.measure import Service, batch_command, measure_round
from scripts.bench.batch.photos import VARIANTS, make_folder, variants
from scripts.bench.batch.section import Report, render
from scripts.bench.images import test_jpeg
from scripts.bench.load import Request, load_generator
from scripts.bench.machine import software, this_machine, uptime
from scripts.bench.report import publish
from scripts.bench.serving.__main__ import find_bundle
from scripts.bench.serving.inprocess import InProcessBench, median_ms
from scripts.bench.serving.service import serve

SOFTWARE = ("onnxruntime", "numpy", "pillow")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--images", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=2, help="batch runs, each between two in-process measurements")
    parser.add_argument("--in-process-seconds", type=float, default=10.0, help="each in-process measurement")
    parser.add_argument(
        "--sweep-seconds", type=float, default=3.0, help="per point of the sweep that finds the best arrangement"
    )
    parser.add_argument("--service-seconds", type=float, default=15.0, help="the service at 16 clients, per round")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto", help="the service's load")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="'-' prints instead")
    return parser.parse_args(argv)


def mean_decode_ms(jpegs: list[bytes], settings: Settings, prep: Preprocessing) -> float:
    """Decode + preprocess of each JPEG (median of a few), averaged: what one image costs the decode pool."""
    limits = DecodeLimits(settings.max_image_pixels, settings.draft_decode)

    def one(data: bytes) -> float:
        return median_ms(lambda: load_input(data, prep, limits), 5)

    return statistics.mean(one(data) for data in jpegs)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.models_dir = args.models_dir.resolve()
    bundle = find_bundle(args.models_dir, args.model)
    settings = Settings(models_dir=args.models_dir)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    uptime_before = uptime()
    print(f"imgclf batch benchmark: {uptime_before}", flush=True)
    reference = test_jpeg((640, 480))
    jpegs = variants()
    # The limit is measured on the very photos the command reads (decoded in turn), so both do the same work.
    bench = InProcessBench(bundle, jpegs, settings)
    print("in-process sweep on the same photos (the limit's arrangement):", flush=True)
    arrangement, batch, _ = bench.sweep(args.sweep_seconds).limit
    prep = bundle.spec.preprocessing
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="imgclf-bench-batch-")))
        folder = tmp / "photos"
        total_bytes = make_folder(folder, args.images)
        print(f"{args.images:,} images written to {folder} ({total_bytes / 2**20:.0f} MiB)", flush=True)
        command = batch_command(folder, tmp / "out.csv", args.models_dir, args.model)
        env = {**os.environ}
        generate = load_generator(args.client, tmp)
        server = stack.enter_context(serve(args.models_dir, args.model, {}, tmp, "batch-bench"))
        photos = Request(f"/v1/models/{args.model}/predict", content_type="image/jpeg", rotate=tuple(jpegs))
        service = Service(server, photos, generate, args.service_seconds)
        rounds = []
        for i in range(args.rounds):
            print(f"round {i + 1}:", flush=True)
            rounds.append(measure_round(bench, arrangement, batch, args.in_process_seconds, command, env, service))
    backend = f"{bench.backend.name} on {bench.backend.device}"
    bench.close()
    report = Report(
        started=started,
        machine=this_machine(),
        software=software(SOFTWARE),
        settings=settings,
        model=f"{bundle.name}` version `{bundle.version}",
        backend=backend,
        images=args.images,
        variants=VARIANTS,
        image_kib=total_bytes / args.images / 1024,
        decode_ms=mean_decode_ms(jpegs, settings, prep),
        reference_decode_ms=mean_decode_ms([reference], settings, prep),
        arrangement=arrangement,
        batch=batch,
        in_process_seconds=args.in_process_seconds,
        command="python -m app.batch PHOTOS/ --output out.csv --quiet",
        client=generate.description,
        service_seconds=args.service_seconds,
        rounds=rounds,
        uptime_before=uptime_before,
        uptime_after=uptime(),
    )
    publish(render(report), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

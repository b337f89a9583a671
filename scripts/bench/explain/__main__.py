"""``python -m scripts.bench.explain``: run the explanation benchmark and write its section of BENCHMARKS.md."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from app.config import Settings
from scripts.bench import ROOT
from scripts.bench.explain import __doc__ as description
from scripts.bench.explain.measure import explanation_cost, with_and_without
from scripts.bench.explain.section import Report, render
from scripts.bench.images import test_jpeg
from scripts.bench.load import Request, load_generator
from scripts.bench.machine import load_average, software, this_machine
from scripts.bench.report import publish
from scripts.bench.serving.__main__ import find_bundle
from scripts.bench.serving.service import serve

SOFTWARE = ("onnxruntime", "numpy", "pillow", "fastapi", "uvicorn")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(description or "").split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--explanations", type=int, default=5, help="explanations timed one at a time")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per predict window")
    parser.add_argument("--rounds", type=int, default=3, help="alternating without/with rounds per client count")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4], help="predicting clients")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="'-' prints instead")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.models_dir = args.models_dir.resolve()
    bundle = find_bundle(args.models_dir, args.model)
    image = test_jpeg((640, 480))
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = load_average()
    print(f"imgclf explanation benchmark: load {load_before:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="imgclf-bench-explain-") as tmp:
        work = Path(tmp)
        generate = load_generator(args.client, work)
        request = Request("/v1/predict", image, "image/jpeg")
        with serve(args.models_dir, args.model, {}, work, "explain") as server:
            cost = explanation_cost(server, image, args.explanations)
            rounds = [
                with_and_without(server, generate, request, image, clients, args.seconds, index)
                for clients in args.concurrency
                for index in range(args.rounds)
            ]
    report = Report(
        started=started,
        machine=this_machine(),
        software=software(SOFTWARE, tools=("wrk",)),
        settings=Settings(models_dir=args.models_dir),
        model=f"{bundle.name}` version `{bundle.version}",
        image_bytes=len(image),
        client=generate.description,
        seconds=args.seconds,
        cost=cost,
        rounds=rounds,
        load_before=load_before,
        load_after=load_average(),
    )
    publish(render(report), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m scripts.bench.training``: run the training benchmark's parts and write its section of BENCHMARKS.md."""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from scripts.bench import ROOT
from scripts.bench.machine import this_machine, uptime
from scripts.bench.report import publish
from scripts.bench.training import __doc__ as description
from scripts.bench.training import fashion_mnist, fixed_cost, pretrained, throughput
from scripts.bench.training.context import Settings, run

HEADING = "## Training"


class Part(Protocol):
    def measure(self, settings: Settings) -> dict[str, Any]: ...

    def render(self, settings: Settings, result: dict[str, Any]) -> list[str]: ...


# In the order the section shows them; --only says which to run (and in which order).
PARTS: dict[str, Part] = {"a": fashion_mnist, "b": pretrained, "c": throughput, "d": fixed_cost}


def machine_text() -> str:
    import torch

    machine = this_machine()
    return (f"{machine.cpu}, {machine.cores} cores, {machine.memory_gib:.0f} GiB, no GPU; Python "
            f"{platform.python_version()}, torch {torch.__version__}")  # fmt: skip


def render(settings: Settings, info: dict[str, Any]) -> str:
    lines = [
        HEADING,
        "",
        f"Measured by `python -m scripts.bench.training` (`make bench-training`; `--only a`, `b`, `c` or `d` reruns "
        f"a part) on {info['date']}. Machine: {info['machine']}, shared with other engineers' jobs: each part gives "
        "the load (`uptime`) before and after it. Every run used "
        f"{settings.threads} intra-op thread"
        f"{'s' if settings.threads > 1 else ''} (`OMP_NUM_THREADS={settings.threads}`): with two threads on two"
        " cores that other processes also use, each parallel region waits for the thread that was descheduled, and"
        " throughput fell 2-8x in our measurements; one thread degrades gracefully.",
        "",
    ]
    for key, part in PARTS.items():
        if info.get(key):
            lines += part.render(settings, info[key])
    return "\n".join(lines).rstrip() + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "fashion-mnist")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-training")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=56)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--only", default="dcba", help="which parts to run, e.g. 'a' or 'bc' (default: all)")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check the benchmark in a few minutes")
    parser.add_argument("--render-only", action="store_true", help="rewrite the section from WORK/results.json")
    args = parser.parse_args(argv)
    if unknown := set(args.only) - set(PARTS):
        parser.error(f"--only takes parts {', '.join(PARTS)}, not {', '.join(sorted(unknown))}")
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    """The run's settings, with the data prepared: a tiny subset for --smoke, else the whole set if missing."""
    settings = Settings(
        data=args.data, work=args.work, threads=args.threads, image_size=args.image_size,
        epochs=1 if args.smoke else args.epochs, subset_per_class=10 if args.smoke else 100,
        subset_epochs=2 if args.smoke else 10, throughput_batches=3 if args.smoke else 20, smoke=args.smoke,
    )  # fmt: skip
    if args.smoke:
        from training.prepare import prepare_fashion_mnist

        settings = dataclasses.replace(settings, data=args.work / "fashion-mnist-smoke")
        prepare_fashion_mnist(settings.data, limit=30)
    elif not (settings.data / "train").is_dir():
        run([sys.executable, "-m", "training", "prepare", "fashion-mnist", "--out", str(settings.data)], 1,
            args.work / "prepare.log")  # fmt: skip
    settings.work.mkdir(parents=True, exist_ok=True)
    return settings


def measure(settings: Settings, only: str, results: Path) -> dict[str, Any]:
    """Run the parts in ``only``; the results so far go to ``results`` after each part. A partial run keeps the
    other parts' earlier results."""
    info: dict[str, Any] = json.loads(results.read_text()) if results.exists() and len(only) < len(PARTS) else {}
    info.update({"machine": machine_text(), "uptime_start": uptime(), "date": time.strftime("%Y-%m-%d")})
    print(f"{info['machine']}\n{info['uptime_start']}", flush=True)
    for key in only:
        print(f"({key}) ...", flush=True)
        before = uptime()
        info[key] = {**PARTS[key].measure(settings), "uptime": [before, uptime()]}
        results.write_text(json.dumps(info, indent=1, default=str))
    info["uptime_end"] = uptime()
    results.write_text(json.dumps(info, indent=1, default=str))
    return info


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    results = settings.work / "results.json"
    if args.render_only:
        publish(render(settings, json.loads(results.read_text())), args.output)
        return 0
    info = measure(settings, args.only, results)
    publish(render(settings, info), None if settings.smoke else args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m scripts.soak``: run the reliability suite and write the "## Reliability" section of BENCHMARKS.md."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelspec import list_models
from scripts.bench import ROOT
from scripts.bench.images import test_jpeg
from scripts.bench.machine import software, this_machine, uptime
from scripts.bench.report import publish
from scripts.soak import __doc__ as description
from scripts.soak import drain, fuzz, kill, load, overload, protocol, reload, slow_clients
from scripts.soak.context import Context, Sizes
from scripts.soak.section import render

SOFTWARE = ("uvicorn", "httptools", "uvloop", "starlette", "fastapi", "schemathesis")

Measure = Callable[[Context], dict[str, Any]]
# In the order the section shows them; --only picks some.
PARTS: dict[str, Measure] = {
    "protocol": protocol.measure,
    "load": load.measure,
    "overload": overload.measure,
    "slow": slow_clients.measure,
    "drain": drain.measure,
    "reload": reload.measure,
    "kill": kill.measure,
    "fuzz": fuzz.measure,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models", help="where the bundle comes from")
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--only", nargs="+", choices=list(PARTS), help="run these parts (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a check of the suite in a few minutes")
    parser.add_argument("--baseline", type=Path, help="another source tree to A/B in the protocol part")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "soak", help="logs and results.json")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"), help="'-' prints the section only")
    parser.add_argument("--render-only", action="store_true", help="rewrite the section from WORK/results.json")
    return parser.parse_args(argv)


def run_parts(args: argparse.Namespace, results: dict[str, Any]) -> None:
    if not list_models(args.models_dir).get(args.model):
        raise SystemExit(f"no bundle {args.model!r} in {args.models_dir}; make default-model builds it")
    sizes = Sizes.quick() if args.quick else Sizes()
    args.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="imgclf-soak-") as scratch:
        ctx = Context(
            source=args.models_dir.resolve(),
            models_dir=Path(scratch) / "models",
            model=args.model,
            image=test_jpeg((640, 480)),
            work=args.work.resolve(),
            sizes=sizes,
            baseline=args.baseline.resolve() if args.baseline else None,
        )
        for name in args.only or list(PARTS):
            print(f"{name}: {uptime()}", flush=True)
            results["parts"][name] = PARTS[name](ctx)
            save(args.work, results)
        shutil.rmtree(ctx.models_dir, ignore_errors=True)


def save(work: Path, results: dict[str, Any]) -> None:
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results_file = args.work / "results.json"
    if args.render_only:
        results = json.loads(results_file.read_text())
    else:
        previous = json.loads(results_file.read_text()) if results_file.exists() and args.only else {"parts": {}}
        machine = this_machine()
        results = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{machine.cpu}, {machine.cores} cores, {machine.memory_gib:.0f} GiB",
            "software": software(SOFTWARE, tools=("wrk",)),
            "quick": args.quick,
            "uptime_before": uptime(),
            "parts": previous.get("parts", {}),
        }
        run_parts(args, results)
        results["uptime_after"] = uptime()
        save(args.work, results)
    publish(render(results), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

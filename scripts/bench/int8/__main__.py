"""``python -m scripts.bench.int8 BUNDLE [BUNDLE ...]``: fp32 and int8 model-only throughput at batch 1 and 8.

The two graphs are measured in alternating rounds on the same random batch with the same thread count, so a busy
machine slows both alike; the table gives the median of the rounds and the int8/fp32 ratio, plus the bundle's
recorded accuracy check.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from modelspec.bundle import INT8_ONNX_FILE, ONNX_FILE, read_bundle
from modelspec.machine import measured_on
from training.quantize.compare import measure_speed, session


def bench(bundle_dir: Path, threads: int, batch_sizes: list[int], seconds: float, rounds: int) -> None:
    bundle = read_bundle(bundle_dir)
    crop = bundle.spec.preprocessing.crop_size
    record = bundle.spec.quantization
    if record is None or record.file is None:
        print(f"{bundle_dir}: no int8 graph ({record.reason if record else 'not quantised'})")
        return
    models = {"fp32": session(bundle.file(ONNX_FILE), threads), "int8": session(bundle.file(INT8_ONNX_FILE), threads)}
    print(f"\n{bundle.name} v{bundle.version} ({crop} px), {threads} threads; {record.reason}")
    print(f"{'batch':>5}  {'fp32 img/s':>10}  {'int8 img/s':>10}  {'int8/fp32':>9}")
    for batch_size in batch_sizes:
        rates: dict[str, list[float]] = {"fp32": [], "int8": []}
        for _ in range(rounds):
            for name, model in models.items():
                rates[name].append(measure_speed(model, (3, crop, crop), batch_size, seconds).images_per_second)
        fp32, int8 = statistics.median(rates["fp32"]), statistics.median(rates["int8"])
        print(f"{batch_size:>5}  {fp32:>10.1f}  {int8:>10.1f}  {int8 / fp32:>8.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.int8", description=__doc__)
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seconds", type=float, default=2.0, help="per model, batch size and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print("machine:", ", ".join(f"{key} {value}" for key, value in measured_on().items()))
    for bundle_dir in args.bundles:
        bench(bundle_dir, args.threads, args.batch_sizes, args.seconds, args.rounds)


if __name__ == "__main__":
    main()

"""The "## Serving: fp32, int8 and a peer" section and the CPU split: what a reader checks in BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path

from modelspec import read_bundle
from scripts.bench.load import Load
from scripts.bench.machine import Machine
from scripts.bench.serving.cpu_split import classify, split
from scripts.bench.serving.precision import PEER, Limit, Report, Results, Sample, render


def sample(rate: float, p50_ms: float, cpu_ms: float) -> Sample:
    return Sample(Load(1, 1.0, 0, 0, p50_ms, p50_ms, p50_ms), Load(round(rate * 5), 5.0, 0, 0, 50, 60, 70), cpu_ms, 2.0)


def test_the_section_gives_each_contender_its_medians_and_the_paired_ratios(tiny_models_dir: Path) -> None:
    results = Results(
        samples={
            "imgclf fp32": [sample(100, 10, 10), sample(80, 12, 11), sample(90, 11, 10)],
            "imgclf int8": [sample(200, 5, 5), sample(120, 6, 6), sample(180, 5.5, 5)],
            PEER: [sample(90, 9, 12), sample(60, 10, 13), sample(100, 8, 12)],
        },
        limits={"fp32": Limit([110.0, 100.0, 105.0], [9.0, 9.5, 9.2]), "int8": Limit([230.0, 200.0, 220.0], [4.0])},
        auto_reason="int8: within its bound; 2.00x fp32's speed at batch 1 here",
    )
    bundle = read_bundle(tiny_models_dir / "tiny" / "1")
    machine = Machine("Test CPU", 2, 8.0)
    report = Report("2026-12-06", machine, {"kserve": "0.21"}, bundle, "speed-only", 60_000, "wrk", 5, 2, results, 1, 2)
    text = render(report)

    assert text.startswith("## Serving: fp32, int8 and a peer\n")
    assert "CPU SIMD flags" in text and "auto` chose here, at load: int8: within its bound" in text
    assert "| imgclf int8 | 220.0 | 4.00 | 5.50 | 180.0 | 5.0 | 2.00x |" in text  # medians; 180/90 img/s
    assert "| KServe peer | - | - | 9.00 | 90.0 | 12.0 | 1.00x |" in text
    # Ratios are taken round by round (the same background load), then their median.
    assert "at 16 clients (target >= 1.5x): **2.00x** (rounds: 2.00, 1.50, 2.00): met" in text
    assert "int8 / fp32 c=1 p50 (target <= 0.7x): **0.50x**" in text
    assert "KServe peer throughput at 16 clients (target >= 1.5x): **2.00x** (rounds: 2.22, 2.00, 1.80): met" in text


def test_the_cpu_split_sorts_samples_by_the_frame_nearest_the_leaf(tmp_path: Path) -> None:
    http = "Server.run (uvicorn/server.py:86);MetricsMiddleware.__call__ (app/api/metrics_middleware.py:33)"
    decode = f"{http};load_input (modelspec/decode.py:170);ImageFile.load (PIL/ImageFile.py:300)"
    model = "Batcher._work (app/engine/batching.py:133);Session.run (onnxruntime/capi/x.py:406);0x1 (libonnxruntime.so)"
    waiting = "Batcher._work (app/engine/batching.py:133);PyThread_acquire_lock_timed (libpython3.11.so.1.0)"
    assert classify(decode) == "JPEG decode"
    assert classify(model) == "model (ONNX Runtime)"
    assert classify(f"{http};BodyLimitMiddleware.__call__ (app/api/body_limit.py:55)") == "HTTP, middleware, event loop"
    assert classify(waiting) is None
    raw = tmp_path / "raw.txt"
    raw.write_text(f"{decode} 3\n{model} 5\n{waiting} 100\n")
    assert split(raw) == {"JPEG decode": 3, "model (ONNX Runtime)": 5}

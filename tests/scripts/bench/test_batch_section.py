"""The "## Batch" section: the command's own summary is read back, and the verdict follows the rounds' ratios."""

from __future__ import annotations

import pytest

from app.batch.local import BATCH_SIZE
from app.batch.summary import Summary
from app.config import Settings
from scripts.bench.batch.measure import BatchRun, Round, ServiceRun, parse_summary
from scripts.bench.batch.section import Report, render
from scripts.bench.machine import Machine
from scripts.bench.serving.inprocess import Rate


def test_the_benchmark_reads_the_summary_the_command_prints() -> None:
    summary = Summary(model="efficientnet-lite0:1", engine="local engine, onnx on cpu", output="out.csv")
    summary.images = 10_000
    summary.started, summary.finished = 0.0, 74.2
    assert parse_summary("some log line\n" + summary.text()) == (10_000, 74.2, pytest.approx(134.8, abs=0.05))


def report(batch_rates: list[float], limit: float = 100.0, service: float = 80.0) -> Report:
    rounds = [
        Round(Rate(limit, 15.0), BatchRun(10_000, 10_000 / rate, rate, 10_000 / rate + 2, 15.5, "summary"),
              Rate(limit, 15.0), ServiceRun(service, 18.0, 0), 2.5)
        for rate in batch_rates
    ]  # fmt: skip
    return Report(
        started="2026-01-01 00:00 UTC",
        machine=Machine("Test CPU", 2, 8.0),
        software={"Python": "3.11.7"},
        settings=Settings(),
        model="efficientnet-lite0` version `1",
        backend="onnx on cpu",
        images=10_000,
        variants=120,
        image_kib=72.0,
        decode_ms=4.8,
        reference_decode_ms=4.6,
        arrangement="service (onnx on cpu), 2 inference threads",
        batch=1,
        in_process_seconds=10.0,
        command="python -m app.batch PHOTOS/ --output out.csv --quiet",
        client="wrk 4.1.0 (Lua script)",
        service_seconds=15.0,
        rounds=rounds,
        uptime_before="up 1:00, load average: 2.00",
        uptime_after="up 1:10, load average: 2.10",
    )


VERDICTS = [
    ([97.0, 96.0, 90.0], "96% of the in-process limit** (median of 3 rounds; target >= 95%): met"),
    ([94.0, 93.0], "94% of the in-process limit** (median of 2 rounds; target >= 95%): not met"),
]


@pytest.mark.parametrize(("rates", "verdict"), VERDICTS)
def test_the_verdict_is_the_median_ratio_against_the_target(rates: list[float], verdict: str) -> None:
    text = render(report(rates))
    assert text.startswith("## Batch\n")
    assert f"**The batch command runs at {verdict}" in text
    assert "| 1 | 100.0 (100.0 / 100.0) |" in text
    assert "load average: 2.00" in text
    assert f"inference workers of 1 intra-op thread(s) each, batches of {BATCH_SIZE}; the service's:" in text


def test_the_service_verdict_counts_the_whole_command_start_up_included() -> None:
    # 10,000 images at 100 img/s take 100 s, plus 2 s of start-up: 98.0 img/s whole command.
    assert (
        "at 1.09x the service's throughput at 16 clients** on the same photos (median of 1 rounds; target >= "
        "1.1x): not met" in render(report([100.0], service=90.0))
    )
    assert (
        "at 1.23x the service's throughput at 16 clients** on the same photos (median of 1 rounds; target >= "
        "1.1x): met" in render(report([100.0], service=80.0))
    )
    assert "| 100.0 / 98.0 | 100% | 80.0 | 1.23x |" in render(report([100.0], service=80.0))

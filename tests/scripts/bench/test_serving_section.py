"""The "## Serving" section: its tables and target verdicts follow from the numbers it is given."""

from __future__ import annotations

import pytest

from app.config import Settings
from scripts.bench.load import Load, Request
from scripts.bench.machine import Machine
from scripts.bench.serving.inprocess import InProcess, Rate
from scripts.bench.serving.points import Pair, Point, RequestCost, SideBySide
from scripts.bench.serving.scenarios import PRIMARY
from scripts.bench.serving.section import Report, render

ARRANGEMENT = "service (onnx on cpu), 1 inference thread"


def point(
    clients: int, rate: float, p50_ms: float, batching: bool = True, non2xx: int = 0, scenario: str = "/v1/predict"
) -> Point:
    load = Load(round(rate * 10), 10.0, non2xx, 0, p50_ms, p50_ms * 1.5, p50_ms * 2)
    return Point(scenario, batching, clients, load, 3.0, 2.0, 50.0, load.requests, 1.9, 2.5)


def report(c16_rate: float, c1_p50_ms: float, pairs: int = 0) -> Report:
    in_process = InProcess(
        rows=[(ARRANGEMENT, 1, Rate(90.0, 15.0)), (ARRANGEMENT, 16, Rate(100.0, 14.0))],
        single_ms={ARRANGEMENT: 12.0},
        decode_ms=4.5,
    )
    points = [point(1, 70.0, c1_p50_ms), point(16, c16_rate, 120.0), point(64, 95.0, 500.0, non2xx=2)]
    return Report(
        started="2026-01-01 00:00 UTC",
        machine=Machine("Test CPU", 2, 8.0),
        software={"Python": "3.11.7", "wrk": "4.1.0"},
        settings=Settings(),
        model="efficientnet-lite0` version `1",
        image_bytes=60 * 1024,
        client="wrk 4.1.0 (Lua script)",
        backend="onnx on cpu",
        seconds=10.0,
        in_process_seconds=3.0,
        in_process=in_process,
        points=points,
        pairs=[Pair(Rate(100.0, 14.0), points[1]) for _ in range(pairs)],
        startups_s=[2.0, 2.5, 3.5],
        first_ms=[30.0, 12.0, 14.0],
        large_jpeg=(13.0, 120.0),
        load_before=1.0,
        load_after=2.0,
    )


def test_the_section_has_its_heading_tables_and_rows() -> None:
    text = render(report(95.0, 14.0))

    assert text.startswith("## Serving\n")
    for subsection in ("### In-process limit (no HTTP)", "### Over HTTP", "### Targets"):
        assert f"\n{subsection}\n" in text
    assert "### Paired check" not in text  # no pairs were run
    assert "### Other load scenarios" not in text  # none but the primary one
    assert f"**In-process limit: 100.0 img/s** ({ARRANGEMENT}, batch 16)" in text
    assert "| on | 16 | 95.0 | 95% | 120.0 |" in text
    assert "- Machine: Test CPU, 2 cores available to the process" in text
    assert "- Software: Python 3.11.7, wrk 4.1.0." in text
    assert "- Errors at c=64: 2 (non-2xx 2, socket 0)" in text
    assert "median of 3 starts: **2.50 s** (2.00, 2.50, 3.50; target < 3 s)" in text


@pytest.mark.parametrize(
    ("c16_rate", "c1_p50_ms", "throughput", "single"),
    [(95.0, 14.0, "met", "met"), (80.0, 16.0, "NOT met", "NOT met")],
)
def test_targets_are_judged_from_the_numbers(c16_rate: float, c1_p50_ms: float, throughput: str, single: str) -> None:
    text = render(report(c16_rate, c1_p50_ms, pairs=2))

    ratio = f"{c16_rate / 100:.0%}"
    assert f"of the in-process limit (target >= 90%): {throughput}." in text
    assert f"- c=16 throughput: {c16_rate:.1f} img/s = **{ratio}**" in text
    assert f"- Paired rounds: HTTP at 16 clients = **{ratio}** of the in-process rate measured beside it" in text
    assert f"(target within 3 ms): {single}." in text
    assert "### Paired check at 16 clients" in text


def test_other_scenarios_get_their_own_table() -> None:
    with_v2 = report(95.0, 14.0)
    with_v2.others = [point(16, 90.0, 130.0, scenario="/v2/models/m/infer")]

    text = render(with_v2)

    other = text[text.index("### Other load scenarios") : text.index("### Targets")]
    assert "| `/v2/models/m/infer` | 16 | 90.0 | 90% | 130.0 |" in other
    assert "| on | 16 | 95.0 | 95% | 120.0 |" not in other  # the primary scenario stays in its own table
    assert "- c=16 throughput: 95.0 img/s" in text  # and the targets are about it


def test_the_v1_scenario_posts_the_image_as_a_raw_jpeg() -> None:
    assert PRIMARY.request("efficientnet-lite0", b"\xff\xd8") == Request("/v1/predict", b"\xff\xd8", "image/jpeg")
    assert PRIMARY.concurrency == (1, 4, 16, 64)


def side_by_side(other: str, v1_rate: float, other_rate: float) -> SideBySide:
    """/v1 and another scenario loading the service at once for 5 s, at these rates."""
    v1 = Load(round(v1_rate * 5), 5.0, 0, 0, 120.0, 150.0, 200.0)
    loaded = Load(round(other_rate * 5), 5.0, 0, 0, 125.0, 160.0, 210.0)
    return SideBySide("/v1/predict", other, v1, loaded, 2.5)


def test_side_by_side_runs_give_each_scenario_as_a_share_of_the_primary() -> None:
    both = report(95.0, 14.0)
    both.side_by_side = [
        side_by_side("/v2 binary", 60.0, 58.2),
        side_by_side("/v2 JSON", 61.0, 48.8),
        side_by_side("/v2 binary", 64.0, 64.0),
        side_by_side("/v2 JSON", 60.0, 51.0),
        side_by_side("/v2 binary", 50.0, 49.0),
        side_by_side("/v2 JSON", 62.0, 46.5),
    ]
    both.scenarios = {"/v2 binary": ("binary", 0.95), "/v2 JSON": ("base64", None)}
    both.costs = [
        RequestCost("/v1/predict", [18.0, 18.5, 17.5]),
        RequestCost("/v2 binary", [18.2, 18.4, 18.0]),
        RequestCost("/v2 JSON", [19.0, 19.5, 19.8]),
    ]

    text = render(both)

    table = text[text.index("### Scenarios side by side (A/B)") : text.index("### Targets")]
    assert "8 clients each (16 in all), for 5 s" in table
    assert "| 2 | `/v2 JSON` | 61.0 | 48.8 | 80% | 120.0 | 125.0 | 0 | 2.50 |" in table
    # binary: 97%, 100%, 98%; JSON: 80%, 85%, 75%
    assert "- `/v2 binary` beside `/v1/predict`, 8 clients each: **98%** of its throughput" in text
    assert "(median of 3 runs: 97%, 100%, 98%; target >= 95%): met; 1.01x its CPU per request." in text
    assert "- `/v2 JSON` beside `/v1/predict`, 8 clients each: **80%** of its throughput (median of 3 runs" in text
    assert "75%); 1.08x its CPU per request." in text
    costs = text[text.index("Server CPU time per request") : text.index("### Targets")]
    assert "in 3 interleaved blocks" in costs
    assert "| `/v2 binary` | 18.20 | 1.01x | 18.2, 18.4, 18.0 |" in costs


def test_a_scenario_below_its_target_is_not_met() -> None:
    slow = report(95.0, 14.0)
    slow.side_by_side = [side_by_side("/v2 binary", 100.0, 90.0)]
    slow.scenarios = {"/v2 binary": ("binary", 0.95)}

    assert "**90%** of its throughput (median of 1 runs: 90%; target >= 95%): NOT met." in render(slow)

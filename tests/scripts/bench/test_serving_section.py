"""The "## Serving" section: its tables and target verdicts follow from the numbers it is given."""

from __future__ import annotations

import pytest

from app.config import Settings
from scripts.bench.load import Load, Request
from scripts.bench.machine import Machine
from scripts.bench.serving.inprocess import InProcess, Rate
from scripts.bench.serving.points import Pair, Point
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


def ab_round(v1: float, v2_binary: float, v2_json: float | None = None) -> list[Point]:
    """One A/B round at 16 clients: /v1, then the v2 scenarios, at these rates (server CPU 1.9 cores each)."""
    points = [point(16, v1, 120.0), point(16, v2_binary, 125.0, scenario="/v2 binary")]
    return points if v2_json is None else [*points, point(16, v2_json, 150.0, scenario="/v2 JSON")]


def test_alternating_rounds_give_each_scenario_as_a_share_of_the_primary() -> None:
    alternating = report(95.0, 14.0)
    alternating.alternating = [ab_round(100.0, 97.0, 80.0), ab_round(110.0, 100.0, 88.0), ab_round(100.0, 99.0, 75.0)]
    alternating.scenarios = {"/v2 binary": ("binary", 0.95), "/v2 JSON": ("base64", None)}

    text = render(alternating)

    table = text[text.index("### Scenarios side by side at 16 clients (A/B)") : text.index("### Targets")]
    assert "| round | `/v1/predict` img/s | CPU ms/img | `/v2 binary` img/s | % of `/v1/predict` |" in table
    assert "| 2 | 110.0 | 17.3 | 100.0 | 91% | 19.0 | 88.0 | 80% | 21.6 | 2.50 |" in table
    # medians of the per-round ratios: binary 97%, 91%, 99%; JSON 80%, 80%, 75%
    assert "- `/v2 binary` at 16 clients: **97%** of `/v1/predict`'s throughput" in text
    assert "(medians of 3 A/B rounds; target >= 95%): met." in text
    assert "- `/v2 JSON` at 16 clients: **80%** of `/v1/predict`'s throughput, 1.25x its CPU time per image" in text


def test_a_scenario_below_its_target_is_not_met() -> None:
    slow = report(95.0, 14.0)
    slow.alternating = [ab_round(100.0, 90.0)]
    slow.scenarios = {"/v2 binary": ("binary", 0.95)}

    text = render(slow)

    assert "**90%** of `/v1/predict`'s throughput, 1.11x its CPU time per image" in text
    assert "(medians of 1 A/B rounds; target >= 95%): NOT met." in text

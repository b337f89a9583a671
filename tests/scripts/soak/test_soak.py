"""The reliability suite's own pieces: its client counts what the server saw, its section says what was met."""

from __future__ import annotations

from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from scripts.bench.load import Request
from scripts.soak.client import closed_loop
from scripts.soak.section import render
from tests.scripts.recording_server import Recorder, port_of


def test_the_client_records_every_answer_with_its_status(server: ThreadingHTTPServer) -> None:
    ok = closed_loop(port_of(server), Request("/ok", b"image", "image/jpeg"), 3, total=30)
    failing = closed_loop(port_of(server), Request("/fail", b"image", "image/jpeg"), 2, seconds=0.2)

    assert ok.statuses() == {200: 30} and ok.count(200, within=10.0) == 30
    assert set(failing.statuses()) == {503} and failing.count(503) > 0
    assert len(Recorder.seen) == len(ok.answers) + len(failing.answers)


def test_the_section_reports_each_target_as_met_or_not() -> None:
    results: dict[str, Any] = {
        "date": "2026-12-03 12:00 UTC",
        "machine": "a CPU, 2 cores, 24 GiB",
        "software": {"Python": "3.11.7"},
        "parts": {
            "kill": {
                "kills": 8, "completed_before_kill": 0, "litter_after_kills": 1, "litter_mib": 30.0,
                "broken_versions": [], "litter_after_next_write": 0,
            },
            "load": {
                "requests": 100, "clients": 4, "seconds": 2.0, "statuses": {200: 99, 503: 1}, "errors": 1,
                "p50_ms": 10.0, "p99_ms": 20.0, "rss_mib": [250.0, 300.0, 301.0, 302.0, 303.0], "loads": [1.0, 1.0],
            },
        },
    }  # fmt: skip
    section = render(results)

    assert section.startswith("## Reliability\n")
    assert "Leftovers after the kills and the next write: 0, half versions visible: 0, met." in section
    assert "Sustained load: 1 errors, memory +1.0% after the first quarter, **not met**." in section
    assert "### Overload" not in section  # a part that did not run is left out


def overload_point(clients: int, goodput: float, mean_ms: float, max_ms: float) -> dict[str, Any]:
    return {
        "clients": clients, "answers_per_s": goodput, "goodput": goodput, "ok": 100, "refused": 0, "errors": 0,
        "other": 0, "ok_mean_ms": mean_ms, "ok_max_ms": max_ms, "refused_mean_ms": float("nan"),
        "rss_mib": [500.0, 510.0],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("overload_goodput", "first_ms", "goodput_met", "recovery_met"),
    [(95.0, 300.0, "95%, met", "met"), (80.0, 450.0, "80%, **not met**", "**not met**")],
)
def test_overload_targets_compare_medians_of_the_rounds(
    overload_goodput: float, first_ms: float, goodput_met: str, recovery_met: str
) -> None:
    """Goodput against the peak's median; the first request after against the slowest answer under normal load."""
    rounds = [
        {
            "peak": overload_point(16, peak, 200.0, 400.0),
            "overload": overload_point(512, overload_goodput, 600.0, 1900.0),
            "after": {"first_ms": first_ms, "first_status": 200},
        }
        for peak in (90.0, 100.0, 110.0)
    ]
    overload = {
        "deadline": 2.0, "generator": "wrk", "loads": [1.0, 2.0], "scan": {}, "rounds": rounds,
        "alone_p50_ms": 25.0, "overloaded_total": 10, "disconnected_total": 0, "internal_errors": 0,
    }  # fmt: skip
    section = render({"date": "today", "machine": "m", "software": {}, "parts": {"overload": overload}})

    assert f"- Goodput at 512 connections >= 90% of the peak: {goodput_met}." in section
    assert (
        f"- A request right after the overload in normal time: {first_ms:.0f} ms against 200 ms on average and at "
        f"most 400 ms at the peak's load, {recovery_met}."
    ) in section

"""The "## Explanations" section: its numbers follow from the measurements it is given."""

from __future__ import annotations

from app.config import Settings
from scripts.bench.explain.measure import Cost, Round, Window
from scripts.bench.explain.section import HEADING, Report, render
from scripts.bench.load import Load
from scripts.bench.machine import Machine
from scripts.bench.report import replace_section


def window(p50_ms: float, cpu_ms: float = 20.0) -> Window:
    return Window(Load(100, 10.0, 0, 0, p50_ms, p50_ms * 1.5, p50_ms * 2), cpu_ms)


def report(rounds: list[Round]) -> Report:
    cost = Cost(
        [1.5, 1.4, 1.6], [2.0, 2.2, 2.1], 170, {"rows": 13, "cols": 13, "patch": 32, "stride": 16, "crop_size": 224}
    )
    return Report(
        started="2026-01-01 00:00 UTC",
        machine=Machine("Test CPU", 2, 8.0),
        software={"Python": "3.11.7"},
        settings=Settings(),
        model="efficientnet-lite0` version `1",
        image_bytes=60 * 1024,
        client="wrk 4.1.0 (Lua script)",
        seconds=10.0,
        cost=cost,
        rounds=rounds,
        load_before=1.0,
        load_after=2.0,
    )


def test_the_ratio_is_of_the_medians_over_the_rounds() -> None:
    rounds = [
        Round(1, window(12.0), window(18.0), 6.0, 1.1),
        Round(1, window(14.0), window(15.0), 6.5, 1.2),
        Round(1, window(13.0), window(19.5), 9.0, 1.3),
        Round(4, window(40.0), window(60.0), 5.0, 1.4),
    ]
    text = render(report(rounds))
    assert text.startswith(HEADING + "\n")
    assert "| 1 | 3 | 13.0 ms | 18.0 ms | **1.38x** |" in text and text.count("| 6.5 s |") == 1
    assert "| 4 | 1 | 40.0 ms | 60.0 ms | **1.50x** |" in text
    assert "| wall time (client) | **1.50 s** | 1.50, 1.40, 1.60 |" in text
    assert "13 x 13 positions of a 32 px grey window every 16 px" in text
    assert "as much CPU as 105 predictions" in text  # 2.1 s / 20 ms
    assert "load average (1 min) 1.00 before the run and 2.00 after" in text


def test_the_section_replaces_only_its_own() -> None:
    existing = "# Benchmarks\n\n## Serving\n\nfast\n\n## Explanations\n\nold\n"
    updated = replace_section(existing, render(report([Round(1, window(10.0), window(11.0), 1.0, 0.5)])))
    assert "## Serving\n\nfast\n" in updated and "old" not in updated and "1.10x" in updated

"""The "## Training" section shows the parts that have results, in a fixed order, whichever ran last."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.bench.training.__main__ import parse_args, render
from scripts.bench.training.context import Settings

SETTINGS = Settings(Path("data"), Path("runs"), 1, 56, 3, 100, 10, 20, smoke=False)
SPEEDS = {"bare": 60.0, "bare_loader": 58.0, "ours": 57.0, "contiguous": 40.0}
THROUGHPUT = {
    "best": SPEEDS,
    "median": SPEEDS,
    "ratio": 0.95,
    "median_ratio": 0.95,
    "loader_ratio": 57 / 58,
    "rounds": {name: [value] for name, value in SPEEDS.items()},
    "workers": 1,
    "batch": 64,
    "batches": 20,
    "uptime": ["before", "after"],
}
ROWS = [
    {"approach": "Lite0 from scratch", "flags": "--pretrained none", "trainable": "3.38 M", "seconds": 60.0,
     "val": 0.5, "test": 0.52, "test_samples": 1000},
    {"approach": "Lite0 feature extractor (frozen)", "flags": "--mode feature-extractor", "trainable": "12,810",
     "seconds": 30.0, "val": 0.7, "test": 0.71, "test_samples": 1000},
    {"approach": "Lite0 fine-tune (all layers)", "flags": "--mode fine-tune", "trainable": "3.38 M",
     "seconds": 60.0, "val": 0.8, "test": 0.81, "test_samples": 1000},
]  # fmt: skip


def test_only_the_parts_with_results_are_shown_in_order() -> None:
    info = {"date": "2026-01-01", "machine": "Test CPU", "c": THROUGHPUT, "b": {"rows": ROWS, "uptime": ["x", "y"]}}

    text = render(SETTINGS, info)

    assert text.startswith("## Training\n\nMeasured by `python -m scripts.bench.training`")
    assert "### (a)" not in text
    assert text.index("### (b) When should I use") < text.index("### (c) Our training loop")
    assert "Ours runs at **95%** of the bare in-memory loop's speed" in text
    assert "Reading it: Lite0 fine-tune 81.0% > Lite0 feature extractor 71.0% > Lite0 from scratch 52.0%." in text
    assert "Pretrained weights are worth +29.0% to the same network" in text


def test_only_accepts_the_part_letters(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args(["--only", "cb"]).only == "cb"
    with pytest.raises(SystemExit):
        parse_args(["--only", "x"])
    assert "--only takes parts a, b, c, d, not x" in capsys.readouterr().err


def fit_run(label: str, seconds: float) -> dict[str, object]:
    mode = "fine-tune" if label == "fine-tune" else "feature-extractor"
    load = ["12:00 up 1:00,  load average: 1.00, 1.00, 1.00", "12:01 up 1:01,  load average: 1.50, 1.00, 1.00"]
    return {"mode": mode, "label": label, "seconds": seconds, "cpu_seconds": seconds * 1.5, "uptime": load}


@pytest.mark.parametrize(("extractor_seconds", "verdict"), [(20.0, "0.13x"), (24.0, "0.16x")])
def test_the_fixed_cost_verdict_takes_the_slower_feature_extractor_fit(extractor_seconds: float, verdict: str) -> None:
    runs = [
        fit_run("feature-extractor", 18.0),
        fit_run("fine-tune", 150.0),
        fit_run("feature-extractor-again", extractor_seconds),
    ]
    info = {
        "date": "2026-01-01",
        "machine": "Test CPU",
        "d": {"first": fit_run("feature-extractor-first", 45.0), "runs": runs, "command": "python -m training fit"},
    }

    text = render(SETTINGS, info)

    assert f"**A feature-extractor fit takes {verdict} the wall time of a 10-epoch fine-tune**" in text
    assert ("): met." in text) == (verdict == "0.13x")
    assert "| fine-tune | 150.0 | 225.0 | 1.00 / 1.50 |" in text

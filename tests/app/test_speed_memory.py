"""IMGCLF_SPEED_MEMORY_DAYS: auto's load-time timing of int8 against fp32 is remembered per machine and bundle."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

import app.engine.precision
from app.config import Settings
from app.engine.precision import SpeedProbe, choose_precision
from app.engine.speed_memory import DAY_SECONDS, recall, remember
from modelspec import Bundle, read_bundle

SIZES = (1, 4)


def test_a_remembered_measurement_comes_back_until_it_is_too_old(tmp_path: Path) -> None:
    remember("key", {1: 1.8, 4: 2.1}, tmp_path)

    remembered = recall("key", 30, tmp_path)
    assert remembered is not None and remembered.speedups == {1: 1.8, 4: 2.1}
    assert remembered.date == time.strftime("%Y-%m-%d", time.gmtime())
    assert recall("other key", 30, tmp_path) is None

    stored = tmp_path / "speeds" / "key.json"
    month_ago = time.time() - 31 * DAY_SECONDS
    stored.write_text(stored.read_text().replace(str(remembered.measured_at), str(month_ago)))
    assert recall("key", 30, tmp_path) is None
    assert [path.name for path in stored.parent.iterdir()] == ["key.json"]  # no temporary file left behind


def test_a_damaged_or_unwritable_memory_only_means_measuring_again(tmp_path: Path) -> None:
    (tmp_path / "speeds").mkdir()
    (tmp_path / "speeds" / "key.json").write_text("{not json")
    assert recall("key", 30, tmp_path) is None

    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    remember("key", {1: 2.0}, blocked)  # no exception: the folder cannot be made
    assert recall("key", 30, blocked) is None


class CountingMeasure:
    def __init__(self, ratio: float) -> None:
        self.ratio, self.calls = ratio, 0

    def __call__(self, probe: SpeedProbe) -> dict[int, float]:
        self.calls += 1
        return dict.fromkeys(probe.batch_sizes, self.ratio)


@pytest.fixture
def digits(int8_bundle: Bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Bundle:
    """A copy of the int8 digits bundle, with an empty speed memory of its own."""
    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(tmp_path / "cache"))
    target = tmp_path / "models"
    shutil.copytree(int8_bundle.path.parent.parent, target)
    return read_bundle(target / "digits" / "1")


def test_the_real_measurement_runs_once_per_machine_bundle_and_threads(
    digits: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    measure = CountingMeasure(1.9)
    monkeypatch.setattr(app.engine.precision, "measure_speedups", measure)

    first = choose_precision(Settings(), digits, 1, SIZES)
    again = choose_precision(Settings(), digits, 1, SIZES)

    assert measure.calls == 1
    assert first.precision == again.precision == "int8"
    assert "remembered" not in first.reason and "1.90x fp32's speed at batch 1" in first.reason
    assert f"(measured on {time.strftime('%Y-%m-%d', time.gmtime())}, remembered" in again.reason
    assert again.speedups == first.speedups

    choose_precision(Settings(), digits, 2, SIZES)  # other threads: another measurement
    assert measure.calls == 2
    choose_precision(Settings(speed_memory_days=0), digits, 1, SIZES)  # memory off: measured at every load
    assert measure.calls == 3
    assert len(os.listdir(Path(os.environ["IMGCLF_CACHE_DIR"]) / "speeds")) == 2


def test_an_injected_measurement_is_never_remembered_nor_recalled(
    digits: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = CountingMeasure(1.9)
    monkeypatch.setattr(app.engine.precision, "measure_speedups", real)
    choose_precision(Settings(), digits, 1, SIZES)

    slower = choose_precision(Settings(), digits, 1, SIZES, CountingMeasure(0.8))

    assert slower.precision == "fp32" and "0.80x" in slower.reason
    assert real.calls == 1

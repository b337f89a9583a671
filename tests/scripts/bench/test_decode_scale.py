"""``python -m scripts.bench.decode_scale`` end to end on a few photos: its table and its agreement line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scripts.bench import decode_scale

pytestmark = pytest.mark.slow


def test_the_benchmark_times_each_size_and_counts_changed_answers(
    default_models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = default_models_dir / "efficientnet-lite0" / "1"
    argv = ["--bundle", str(bundle), "--photos", "16", "--timed", "2", "--rounds", "1", "--output", "-"]
    assert decode_scale.main(argv) == 0
    section = capsys.readouterr().out
    assert section.startswith(decode_scale.HEADING)
    assert "| 640x480 | 5/8 (400x300) |" in section and "| 451x300 | full size |" in section
    assert len(re.findall(r"^\| \d+x\d+ \|", section, flags=re.MULTILINE)) == len(decode_scale.SIZES)
    # Photos decoded at full size go through libjpeg-turbo exactly as Pillow decodes them: never a changed answer.
    assert re.search(r"\(\d+\.\d%\), 0 of the others \(decoded exactly as at full size\)", section), section

"""``write_atomically``: the old file or the new one, never half of one, and nothing left behind."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from modelspec.files import write_atomically, write_text_atomically


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_a_new_file_is_readable_by_others_and_an_existing_one_keeps_its_mode(tmp_path: Path) -> None:
    fresh = tmp_path / "model.json"
    write_text_atomically(fresh, "{}\n", durable=True)
    assert fresh.read_text() == "{}\n" and stat.S_IMODE(fresh.stat().st_mode) == 0o644
    private = tmp_path / "secret.json"
    private.write_text("old")
    private.chmod(0o600)
    write_text_atomically(private, "new")
    assert private.read_text() == "new" and stat.S_IMODE(private.stat().st_mode) == 0o600
    assert leftovers(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    target.write_text("the old report")

    def half_then_fail(temporary: Path) -> None:
        temporary.write_text("half of the new rep")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomically(target, half_then_fail)
    assert target.read_text() == "the old report"
    assert leftovers(tmp_path) == []


def test_the_temporary_is_hidden_beside_the_target_and_not_named_like_it(tmp_path: Path) -> None:
    seen: list[Path] = []
    write_atomically(tmp_path / "graph.onnx", lambda temporary: (seen.append(temporary), temporary.write_bytes(b"x")))
    (temporary,) = seen
    assert temporary.parent == tmp_path and temporary.name.startswith(".graph.onnx.")
    assert temporary.suffix == ".part"  # a folder scan for *.onnx never takes a file being written for a finished one


def test_writers_racing_on_one_file_leave_one_whole_content(tmp_path: Path) -> None:
    target = tmp_path / "speeds.json"
    contents = [f'{{"writer": {n}, "padding": "{"x" * 50_000}"}}' for n in range(6)]

    def write_many(text: str) -> None:
        for _ in range(15):
            write_text_atomically(target, text)

    threads = [threading.Thread(target=write_many, args=(text,)) for text in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert target.read_text() in contents
    assert leftovers(tmp_path) == []

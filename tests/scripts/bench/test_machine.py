"""The machine description that every section starts with."""

from __future__ import annotations

import platform

from app.config import available_cores
from scripts.bench.machine import software, this_machine, tool_version


def test_the_machine_has_a_processor_cores_and_memory() -> None:
    machine = this_machine()

    assert machine.cpu
    assert machine.cores == available_cores() >= 1  # what the service sizes its threads by
    assert machine.memory_gib > 0


def test_software_lists_python_first_and_leaves_out_what_is_missing() -> None:
    found = software(["numpy", "no-such-package-imgclf"], tools=["no-such-tool-imgclf"])

    assert list(found)[:2] == ["Python", "numpy"]
    assert found["Python"] == platform.python_version()
    assert "no-such-package-imgclf" not in found
    assert "no-such-tool-imgclf" not in found
    assert tool_version("no-such-tool-imgclf") is None

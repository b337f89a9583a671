"""BENCHMARKS.md is one file of sections ("## Serving", "## Training", ...), each written by its own benchmark:
replace exactly one of them and keep the others as they are."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from modelspec.files import write_text_atomically
from scripts.bench.machine import Machine, simd_flags

NEW_FILE = "# Benchmarks\n"


def heading_of(section: str) -> str:
    """The section's first line, e.g. ``## Serving``: what marks it in the file."""
    heading = section.split("\n", 1)[0]
    if not heading.startswith("## "):
        raise ValueError(f"a section starts with a '## ' heading line, not {heading!r}")
    return heading


def replace_section(text: str, section: str) -> str:
    """``text`` with its section of the same heading replaced by ``section`` (added at the end if it has none)."""
    heading = heading_of(section)
    body = section.rstrip("\n") + "\n"
    # From the heading line to the next level-2 heading (a "### " subsection does not end it) or the end.
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda _: body + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    return text.rstrip("\n") + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace (or add) ``section`` in the file at ``path``, which a reader never sees half-written."""
    text = path.read_text(encoding="utf-8") if path.exists() else NEW_FILE
    updated = replace_section(text, section)
    write_text_atomically(path, updated)


def publish(section: str, output: Path | str | None) -> None:
    """Print the section, and write it into ``output`` unless that is None or ``-`` (a dry run, ``--output -``)."""
    if output is not None and str(output) != "-":
        output = Path(output)
        write_section(output, section)
        print(f"wrote the {heading_of(section)!r} section of {output}")
    print(section)


def section_header(
    heading: str, measured_by: str, started: str, machine: Machine, machine_note: str, software: Mapping[str, str]
) -> list[str]:
    """The lines every benchmark section opens with: heading, what measured it and when, machine, its SIMD flags (int8
    and fp32 kernels differ by them: AVX-512 VNNI or not) and software. ``machine_note`` follows "N cores available
    to the process" (the load, how to read the numbers)."""
    versions = ", ".join(f"{name} {version}" for name, version in software.items())
    flags = " ".join(simd_flags()) or "unknown (no /proc/cpuinfo flags)"
    return [
        heading,
        "",
        f"Measured by {measured_by} on {started}, everything below in one run.",
        "",
        f"- Machine: {machine.cpu}, {machine.cores} cores available to the process{machine_note}",
        f"- CPU SIMD flags (/proc/cpuinfo): {flags}.",
        f"- Software: {versions}.",
    ]

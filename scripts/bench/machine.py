"""What the numbers were measured on: processor, cores, memory, load and software versions."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from app.config import available_cores


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int  # available to this process (affinity mask, container quota), as the service sizes itself
    memory_gib: float


def this_machine() -> Machine:
    return Machine(cpu=cpu_model(), cores=available_cores(), memory_gib=memory_gib())


def cpu_model() -> str:
    return _proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine()


def memory_gib() -> float:
    total = _proc_field("/proc/meminfo", "MemTotal")  # "24573952 kB"
    return int(total.split()[0]) / 2**20 if total else float("nan")


def _proc_field(path: str, name: str) -> str | None:
    """The value of the first ``name: value`` line of a /proc file; None where there is no such file or line."""
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    return None


def load_average() -> float:
    """The 1-minute load average: how much other work shared the machine."""
    return os.getloadavg()[0]


def uptime() -> str:
    """``uptime``'s line (time, users, the three load averages), as a reader would see it in a terminal."""
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def software(packages: Iterable[str], tools: Iterable[str] = ()) -> dict[str, str]:
    """Python's version, then each installed package's and each tool's on the PATH (missing ones left out)."""
    found = {"Python": platform.python_version()}
    for package in packages:
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    for tool in tools:
        tool_text = tool_version(tool)
        if tool_text is not None:
            found[tool] = tool_text
    return found


def tool_version(tool: str) -> str | None:
    """The version a command-line tool prints for ``--version`` (``"?"`` if unreadable); None if not installed."""
    path = shutil.which(tool)
    if path is None:
        return None
    done = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    match = re.search(rf"{re.escape(tool)} (\S+)", done.stdout + done.stderr)
    return match.group(1) if match else "?"


SIMD_PREFIXES = ("sse", "ssse", "avx", "fma", "f16c", "amx", "vnni", "vpclmul", "gfni")


def cpu_flags() -> list[str]:
    """The ``flags`` line of /proc/cpuinfo (empty where there is none): what the kernels may use on this CPU."""
    line = _proc_field("/proc/cpuinfo", "flags")
    return line.split() if line else []


def simd_flags() -> list[str]:
    """The vector-instruction flags among ``cpu_flags()`` (SSE, AVX, AVX2, AVX-512, FMA, VNNI, AMX...): what
    decides the speed of matrix products, and the ones a benchmark section names."""
    return [flag for flag in cpu_flags() if flag.startswith(SIMD_PREFIXES)]

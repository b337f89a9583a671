"""This machine, as training and serving both record it: its CPU (int8 kernels, and their speed, differ between
CPUs with and without VNNI) and where imgclf keeps what it can recompute (exported graphs, speed measurements)."""

from __future__ import annotations

import contextlib
import os
import platform
from importlib import metadata
from pathlib import Path

INT8_EXTENSIONS = ("avx2", "avx512_vnni", "avx_vnni", "amx_int8")


def measured_on() -> dict[str, str]:
    """The CPU model and its int8 dot-product extensions, and the ONNX Runtime version."""
    found = {"machine": platform.machine()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and "cpu" not in found:
            found["cpu"] = value.strip()
        if key.strip() == "flags" and "int8_extensions" not in found:
            flags = set(value.split())
            found["int8_extensions"] = " ".join(flag for flag in INT8_EXTENSIONS if flag in flags) or "none"
    with contextlib.suppress(metadata.PackageNotFoundError):
        found["onnxruntime"] = metadata.version("onnxruntime")
    return found


def cache_root() -> Path:
    """``$IMGCLF_CACHE_DIR``, else ``~/.cache/imgclf``."""
    return Path(os.environ.get("IMGCLF_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "imgclf"))

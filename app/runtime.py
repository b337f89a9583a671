"""Process-level tuning that only the server's own entry point applies (``python -m app``), never library code.

Every image allocates and frees a few megabytes: the decoded pixels, the resize buffers, the input tensor. With
glibc's default thresholds, blocks of that size are mapped and unmapped (or trimmed off the heap) again and
again, so each image pays for hundreds of page faults, which are slow in a virtual machine: measured on the
2-core VM of BENCHMARKS.md, decode + preprocess of a 640x480 JPEG took 7.3 ms with the defaults and 4.9 ms
with fixed thresholds. Fixed thresholds keep freed memory in the process for the next image instead.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import MutableMapping

logger = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h) and the environment variables it reads at start-up for the same settings.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # the largest glibc accepts; bigger blocks (huge images) are still mapped
TRIM_THRESHOLD = 128 * 1024 * 1024  # free memory kept at the top of the heap before it is given back
MALLOC_ENVIRONMENT = {
    "MALLOC_MMAP_THRESHOLD_": (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
    "MALLOC_TRIM_THRESHOLD_": (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
}


def keep_freed_memory(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Fix glibc's mmap and trim thresholds for this process and the worker processes it starts.

    A value the user already put in the environment wins (glibc applied it at start-up, and children inherit
    it). Returns whether the tuning is in effect: False where the C library is not glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        logger.debug("no mallopt (not glibc): memory thresholds left as they are")
        return False
    for variable, (parameter, value) in MALLOC_ENVIRONMENT.items():
        if variable in environ:
            continue
        environ[variable] = str(value)  # for worker processes started later (uvicorn --workers)
        if not mallopt(parameter, value):
            logger.warning("mallopt refused %s=%d", variable, value)
            return False
    return True

"""Process-wide settings while a process pushes many images through a model (the batch command's run).

- numpy's OpenBLAS starts a thread per core for the trust scorer's small matrix products (a chunk of embeddings
  through the OOD projection) and lets them spin between calls: CPU the decode and inference threads need. One
  thread is faster at these sizes anyway (16 embeddings through a 1280x256 projection: 170 against 221 us, and
  193 against 333 us of CPU). Profiled with py-spy on the batch command (int8 Fashion-MNIST bundle, 2,000 photos):
  7-8 % of its CPU was OpenBLAS's spinning threads; without them (and with the freeze below) 213-229 img/s instead
  of 148-155.
- ``gc.freeze()`` moves what start-up made (modules, the model's labels, settings) out of the cyclic garbage
  collector's sight, so its collections walk only what the images create: ``gc_collect_main`` fell from 16 % of
  the command's samples to 4 %.

The service does not use it: its trust scorer sees one image per request (OpenBLAS stays on one thread for that
size) and an A/B at 16 clients measured no difference.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def settled() -> Iterator[None]:
    """numpy's OpenBLAS on one thread and start-up's objects frozen, until the block ends."""
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import ThreadpoolController

            stack.enter_context(ThreadpoolController().select(internal_api="openblas").limit(limits=1))
        except Exception:  # an unknown BLAS build: it keeps its threads
            logger.debug("could not limit OpenBLAS's threads", exc_info=True)
        gc.freeze()
        stack.callback(gc.unfreeze)
        yield

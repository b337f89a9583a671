"""The batch command sizes the engine for images per second, not for a lone request; what the user set stays."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController

from app.batch.local import BATCH_SIZE, throughput_settings
from app.config import Settings
from app.engine.process import settled


def test_unset_sizes_become_one_thread_per_worker_a_worker_per_core_and_small_batches() -> None:
    sized = throughput_settings(Settings())
    cores = Settings().cores_per_worker()

    assert (sized.resolved_intra_op_threads(), sized.resolved_inference_workers("onnx")) == (1, cores)
    assert sized.max_batch_size == BATCH_SIZE
    assert sized.warmup is False  # the first chunk warms the sessions


def test_what_the_user_set_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGCLF_MAX_BATCH_SIZE", "32")
    sized = throughput_settings(Settings(intra_op_threads=2))  # as IMGCLF_INTRA_OP_THREADS=2 would

    assert sized.max_batch_size == 32
    assert sized.resolved_intra_op_threads() == 2
    assert sized.inference_workers == 0  # left to the service's rule, as the user's threads ask


def test_settled_limits_openblas_and_freezes_start_up_only_while_it_lasts() -> None:
    blas = ThreadpoolController().select(internal_api="openblas")
    np.ones((2, 2)) @ np.ones((2, 2))  # numpy's BLAS is loaded
    before = [pool["num_threads"] for pool in blas.info()]

    with settled():
        assert gc.get_freeze_count() > 0
        inside = [pool["num_threads"] for pool in ThreadpoolController().select(internal_api="openblas").info()]
        assert inside and all(threads == 1 for threads in inside)

    assert gc.get_freeze_count() == 0
    assert [pool["num_threads"] for pool in ThreadpoolController().select(internal_api="openblas").info()] == before

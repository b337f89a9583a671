"""Devices, mixed precision and DistributedDataParallel, behind small helpers so the loop stays plain.

Under ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``) ``fit`` joins a process group: gloo on
CPU, NCCL on CUDA. Each process trains on its shard of the data; only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from training.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> DistInfo:
    """The job layout torchrun describes in the environment; a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(choice: str, info: DistInfo) -> torch.device:
    """``auto``: CUDA when there is a GPU, else CPU. ``cuda`` without a GPU is an error, not a silent CPU run."""
    if choice == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", info.local_rank % torch.cuda.device_count())
    if choice == "cuda":
        raise ConfigError("--device cuda, but torch sees no CUDA GPU; use --device cpu (or auto)")
    return torch.device("cpu")


def init_process_group(info: DistInfo, device: torch.device) -> None:
    if not info.enabled:
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    logger.info("rank %d of %d joined the %s process group", info.rank, info.world_size, backend)


def destroy_process_group(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap(network: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """The module the loop calls: DDP over ``network`` in a job, ``network`` itself otherwise.

    Build it anew whenever ``requires_grad`` changes (a new transfer phase): DDP registers its gradient hooks for
    the parameters that train when it is created.
    """
    if not info.enabled:
        return network
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(network, device_ids=device_ids)


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast(value: Any, info: DistInfo) -> Any:
    """Rank 0's ``value`` on every rank (a run folder name, a decision)."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


@dataclass
class Precision:
    """Mixed precision on CUDA: autocast to bf16 where the GPU supports it (no scaling needed), else fp16 with a
    GradScaler. On CPU, and without ``--amp``, everything stays float32."""

    device_type: str
    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device_type, dtype=self.dtype):
            yield

    def backward_and_step(
        self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, clip_grad_norm: float | None
    ) -> None:
        """Backward, optional gradient clipping (on unscaled gradients), optimiser step."""
        if self.scaler is not None:
            torch.autograd.backward(self.scaler.scale(loss))
            if clip_grad_norm:
                self.scaler.unscale_(optimizer)
                _clip(optimizer, clip_grad_norm)
            self.scaler.step(optimizer)
            self.scaler.update()
            return
        torch.autograd.backward(loss)
        if clip_grad_norm:
            _clip(optimizer, clip_grad_norm)
        optimizer.step()

    @property
    def label(self) -> str:
        return "float32" if self.dtype is None else str(self.dtype).removeprefix("torch.")


def _clip(optimizer: torch.optim.Optimizer, max_norm: float) -> None:
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    torch.nn.utils.clip_grad_norm_(parameters, max_norm)


def make_precision(device: torch.device, amp: bool) -> Precision:
    if not amp:
        return Precision(device.type)
    if device.type != "cuda":
        logger.warning("--amp applies to CUDA; training in float32 on %s", device)
        return Precision(device.type)
    if torch.cuda.is_bf16_supported():
        return Precision("cuda", torch.bfloat16)
    return Precision("cuda", torch.float16, torch.amp.GradScaler("cuda"))


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format

"""PyTorch backend, from the safetensors weights: for CUDA, or where ONNX is not wanted.

Measured on an H100 with EfficientNet-Lite0: fp32 NCHW runs a batch in ~6 ms and meets a new batch size in
70-100 ms; fp16 and channels-last make cuDNN compile kernels for every new shape (1.5-4 s each) for at best ~2 ms a
batch, so the default is plain fp32 (fp16 is opt-in). Pinning host memory per batch cost more than it saved
(batch 16: 1.4 ms and 20 ms of CPU, against 0.7 ms and 4 ms for a plain copy).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from app.engine.backends.base import Batch, Outputs, run_zeros, usual_batch_sizes
from app.engine.precision import FP32_ON_TORCH, PrecisionChoice
from modelspec import Bundle
from modelspec.network import load_network


class TorchBackend:
    name = "torch"

    def __init__(self, bundle: Bundle, device: str = "cpu", *, fp16: bool = False, threads: int = 0) -> None:
        self.device = str(torch.device(device))
        self._cuda = self.device.startswith("cuda")
        self._dtype = torch.float16 if (fp16 and self._cuda) else torch.float32
        self.precision = (
            FP32_ON_TORCH
            if self._dtype == torch.float32
            else PrecisionChoice(
                "fp32",
                "fp32: the PyTorch backend serves the fp32 weights, here in half precision on CUDA (IMGCLF_FP16=true)",
            )
        )
        if threads:
            torch.set_num_threads(threads)  # on CUDA these threads only copy; more of them would spin idle
        self._network = load_network(bundle, self.device).to(dtype=self._dtype)

    def run(self, batch: Batch) -> Outputs:
        with torch.inference_mode():
            images = torch.from_numpy(batch)
            if self._cuda:
                images = images.to(self.device).to(dtype=self._dtype)
            logits, embeddings = self._network(images)
            return (
                logits.float().cpu().numpy().astype(np.float32, copy=False),
                embeddings.float().cpu().numpy().astype(np.float32, copy=False),
            )

    @property
    def run_alone(self) -> Callable[[Batch], Outputs]:
        return self.run  # torch shares its thread pool between batches: nothing to choose

    def warm_up(self, image_shape: tuple[int, int, int], max_batch_size: int) -> None:
        # cuDNN picks its kernels per input shape, and CUDA loads them lazily: cheap to do every size up front.
        sizes = range(1, max_batch_size + 1) if self._cuda else usual_batch_sizes(max_batch_size)
        run_zeros(self.run, image_shape, sizes)

    def close(self) -> None:
        del self._network
        if self._cuda:
            torch.cuda.empty_cache()

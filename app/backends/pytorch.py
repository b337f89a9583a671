"""PyTorch backend, from the safetensors weights: for CUDA (fp16, channels-last), or where ONNX is not wanted."""

from __future__ import annotations

import numpy as np
import torch

from app.backends.base import Batch, Outputs
from modelspec import Bundle
from modelspec.network import load_network


class TorchBackend:
    name = "torch"

    def __init__(self, bundle: Bundle, device: str = "cpu", *, fp16: bool = False, threads: int = 0) -> None:
        self.device = str(torch.device(device))
        self._cuda = self.device.startswith("cuda")
        self._dtype = torch.float16 if (fp16 and self._cuda) else torch.float32
        if threads and not self._cuda:
            torch.set_num_threads(threads)
        network = load_network(bundle, self.device).to(dtype=self._dtype)
        if self._cuda:
            network = network.to(memory_format=torch.channels_last)
        self._network = network

    def run(self, batch: Batch) -> Outputs:
        with torch.inference_mode():
            images = torch.from_numpy(batch)
            if self._cuda:
                images = images.pin_memory().to(self.device, non_blocking=True)
                images = images.to(dtype=self._dtype, memory_format=torch.channels_last)
            logits, embeddings = self._network(images)
            return (
                logits.float().cpu().numpy().astype(np.float32, copy=False),
                embeddings.float().cpu().numpy().astype(np.float32, copy=False),
            )

    def close(self) -> None:
        del self._network
        if self._cuda:
            torch.cuda.empty_cache()

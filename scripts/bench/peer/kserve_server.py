"""``python -m scripts.bench.peer.kserve_server BUNDLE_DIR --http_port PORT``: a bundle's fp32 ``model.onnx`` behind
a KServe ``ModelServer`` (KServe's own flags, e.g. ``--http_port``, ``--enable_grpc false``, are read by KServe).

Written as a user would: ONNX Runtime with its default session options, a raw ``image/jpeg`` body on KServe's v1
route ``POST /v1/models/{name}:predict``, the decode and the forward pass of each request in a thread (so one
request decodes while another runs), the top 5 as JSON. No batching: KServe's Python server has none built in.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from kserve import Model, ModelServer

from modelspec import ONNX_FILE, read_bundle, tensors
from modelspec.decode import load_input

NAME = "peer"


class OnnxImageModel(Model):  # type: ignore[misc]
    def __init__(self, name: str, bundle_dir: Path) -> None:
        super().__init__(name)
        self.bundle = read_bundle(bundle_dir)
        self.session = ort.InferenceSession(str(self.bundle.file(ONNX_FILE)), providers=["CPUExecutionProvider"])
        self.ready = True

    def _classify(self, data: bytes) -> dict[str, Any]:
        image = load_input(data, self.bundle.spec.preprocessing)
        logits = self.session.run([tensors.LOGITS], {tensors.INPUT: image[None]})[0][0]
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        best = np.argsort(-probabilities)[:5]
        labels = self.bundle.spec.labels
        return {"predictions": [{"label": labels[i], "index": int(i), "score": float(probabilities[i])} for i in best]}

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
        return await asyncio.to_thread(self._classify, bytes(payload))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bundle", type=Path)
    args, _ = parser.parse_known_args()  # the rest are KServe's
    ModelServer().start([OnnxImageModel(NAME, args.bundle)])


if __name__ == "__main__":
    main()

"""ONNX Runtime backend: the default on CPU (faster than torch eager here and needs no torch install)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from app.backends.base import Batch, Outputs
from modelspec import ONNX_FILE, Bundle

INPUT_NAME = "images"
OUTPUT_NAMES = ["logits", "embedding"]


class OnnxBackend:
    name = "onnx"
    device = "cpu"

    def __init__(self, bundle: Bundle, threads: int, *, spinning: bool = False) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only; ORT warns about benign things at load
        self._session = ort.InferenceSession(
            str(bundle.file(ONNX_FILE)), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def run(self, batch: Batch) -> Outputs:
        logits, embeddings = self._session.run(OUTPUT_NAMES, {INPUT_NAME: batch})
        return np.asarray(logits, dtype=np.float32), np.asarray(embeddings, dtype=np.float32)

    def close(self) -> None:
        del self._session

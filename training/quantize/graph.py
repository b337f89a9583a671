"""ONNX Runtime static quantisation (QDQ) of a bundle's graph: pre-process, calibrate once per method, quantise.

Calibration runs the float graph on the calibration images and records each tensor's range (or histogram); it is
the slow part, so its result is cached per method and shared by every setting that differs only in weights or in
the nodes kept float32. Images go through the calibrator a few batches at a time: ONNX Runtime's histogram
calibrators otherwise hold every intermediate tensor of every image in memory at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import onnx

from modelspec import tensors
from modelspec.preprocess import Float32Array
from training.quantize.settings import Fp32Policy, Setting

logger = logging.getLogger(__name__)

CALIBRATION_CHUNK = 16
"""Images per calibrator pass: the histogram calibrators hold every intermediate tensor of a pass (tens of MB per
image for EfficientNet-Lite0 at 224 px), then merge it into their histograms and let it go."""
CALIBRATION_BATCH = 8

_WEIGHTLESS_OPS = frozenset({"Add", "Reshape", "Flatten", "Identity", "Squeeze", "Unsqueeze", "Cast"})


class QuantizationFailedError(RuntimeError):
    """ONNX Runtime could not quantise the graph, or the result lost an output."""


def pre_process(source: Path, target: Path) -> bool:
    """ONNX Runtime's pre-processing for quantisation (shape inference, graph optimisation) into ``target``.

    Returns False, leaving a plain copy, when it fails: quantisation works without it, only less well for graphs
    whose batch norms are not folded into their convolutions (our exports already fold them)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(source), str(target), skip_symbolic_shape=False)
    except Exception as exc:  # the pre-processing is an optimisation; a graph it cannot handle still quantises
        logger.warning("ONNX Runtime's quantisation pre-processing failed (%s); quantising the graph as exported", exc)
        target.write_bytes(source.read_bytes())
        return False
    return True


def sensitive_nodes(model: onnx.ModelProto, policy: Fp32Policy) -> list[str]:
    """The names of the nodes ``policy`` keeps float32: the first convolution (it sees raw pixels, whose range the
    calibration fixes for every image), the classifier that produces the logits, and any Softmax."""
    if policy == "none":
        return []
    graph = model.graph
    names: list[str] = []
    consumers: dict[str, list[onnx.NodeProto]] = {}
    producer: dict[str, onnx.NodeProto] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
        for name in node.output:
            producer[name] = node
    stem = _first_conv(consumers, tensors.INPUT)
    if stem is not None:
        names.append(stem.name)
    classifier = _classifier(producer, tensors.LOGITS)
    if classifier is not None:
        names.append(classifier.name)
    names.extend(node.name for node in graph.node if node.op_type == "Softmax")
    return list(dict.fromkeys(names))


def _first_conv(consumers: dict[str, list[onnx.NodeProto]], start: str) -> onnx.NodeProto | None:
    """The first Conv reached from the graph input, breadth first."""
    frontier, seen = [start], {start}
    while frontier:
        next_frontier = []
        for tensor in frontier:
            for node in consumers.get(tensor, []):
                if node.op_type == "Conv":
                    return node
                for output in node.output:
                    if output not in seen:
                        seen.add(output)
                        next_frontier.append(output)
        frontier = next_frontier
    return None


def _classifier(producer: dict[str, onnx.NodeProto], output: str) -> onnx.NodeProto | None:
    """The Gemm or MatMul that produces ``output``, looking back through bias adds and reshapes."""
    node = producer.get(output)
    while node is not None:
        if node.op_type in ("Gemm", "MatMul"):
            return node
        if node.op_type not in _WEIGHTLESS_OPS:
            return None
        node = next((producer[name] for name in node.input if name in producer), None)
    return None


class _Batches:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over in-memory batches."""

    def __init__(self, batches: Sequence[Float32Array]) -> None:
        self._batches = iter(batches)

    def get_next(self) -> dict[str, Float32Array] | None:
        batch = next(self._batches, None)
        return None if batch is None else {tensors.INPUT: batch}


def calibrate(model_path: Path, images: Float32Array, setting: Setting, cache: Path, work_dir: Path) -> None:
    """Run the calibration of ``setting.method`` on ``images`` (N x C x H x W) and save the ranges to ``cache``."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator
    from onnxruntime.quantization.calibrate import save_tensors_data

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[setting.method]
    options: dict[str, object] = {}
    if setting.method == "percentile":
        options = {"percentile": setting.percentile, "symmetric": True}
    calibrator = create_calibrator(
        model_path,
        None,
        augmented_model_path=str(work_dir / f"augmented-{setting.method}.onnx"),
        calibrate_method=method,
        extra_options=options,
    )
    for start in range(0, len(images), CALIBRATION_CHUNK):
        chunk = images[start : start + CALIBRATION_CHUNK]
        calibrator.collect_data(
            _Batches([chunk[i : i + CALIBRATION_BATCH] for i in range(0, len(chunk), CALIBRATION_BATCH)])
        )
    save_tensors_data(calibrator.compute_data(), cache)


def quantize(model_path: Path, target: Path, setting: Setting, cache: Path) -> list[str]:
    """Quantise ``model_path`` (calibrated into ``cache``) with ``setting`` into ``target``; returns the names of
    the nodes kept float32. Raises ``QuantizationFailedError`` if ONNX Runtime fails or an output went missing."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(model_path), load_external_data=False)
    fp32_nodes = sensitive_nodes(model, setting.fp32_policy)
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[setting.method]
    try:
        quantize_static(
            str(model_path),
            str(target),
            None,
            quant_format=QuantFormat.QDQ,
            per_channel=setting.per_channel,
            reduce_range=setting.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=fp32_nodes,
            calibrate_method=method,
            calibration_cache_path=str(cache),
        )
    except Exception as exc:
        raise QuantizationFailedError(f"ONNX Runtime could not quantise {model_path.name}: {exc}") from exc
    check_outputs(target)
    return fp32_nodes


def check_outputs(path: Path, expected: Iterable[str] = tensors.OUTPUTS) -> None:
    """The int8 graph must keep the input and both outputs of ``model.onnx``, as float32."""
    graph = onnx.load(str(path), load_external_data=False).graph
    outputs = {value.name: value.type.tensor_type.elem_type for value in graph.output}
    inputs = {value.name for value in graph.input}
    missing = [name for name in expected if outputs.get(name) != onnx.TensorProto.FLOAT]
    if missing or tensors.INPUT not in inputs:
        raise QuantizationFailedError(
            f"the quantised graph lost its float32 input {tensors.INPUT!r} or output(s) {missing}; "
            f"it has inputs {sorted(inputs)} and outputs {sorted(outputs)}"
        )


def stack(images: Sequence[Float32Array]) -> Float32Array:
    """Preprocessed CHW images -> one contiguous NCHW batch."""
    return np.ascontiguousarray(np.stack(images), dtype=np.float32)

"""The quantisation settings that can be chosen, the default one, and the grid a search tries.

Measured on the embedded EfficientNet-Lite0 (top-1 agreement with fp32 on 400 crops of the offline photos, 256
calibration crops, Xeon with AVX-512 VNNI, ONNX Runtime 1.32): MinMax per-channel 84.8 %, with the stem and the
classifier kept float32 88.0 %; per-tensor weights 49.5 % and 53.0 %. Per-channel weights are what matters
(depthwise convolutions have very different ranges per channel). ``python -m training quantize --search`` measures
the whole grid on a bundle's own validation split and keeps the best. On a Fashion-MNIST bundle (Lite0 features,
32 px, 600 validation images) the grid's agreement was: per-channel 95.2-96.0 % (MinMax, Entropy, Percentile, with
or without fp32 nodes), per-tensor 79.3-81.7 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modelspec.quantization import CalibrationMethod

Fp32Policy = Literal["none", "stem+classifier"]
"""Which nodes stay float32: none, or the first convolution, the classifier (Gemm/MatMul) and any Softmax."""

METHODS: tuple[CalibrationMethod, ...] = ("minmax", "entropy", "percentile")
FP32_POLICIES: tuple[Fp32Policy, ...] = ("none", "stem+classifier")


@dataclass(frozen=True)
class Setting:
    """One way to quantise: how activation ranges are calibrated, weight granularity, what stays float32."""

    method: CalibrationMethod = "minmax"
    per_channel: bool = True
    fp32_policy: Fp32Policy = "none"
    reduce_range: bool = False
    percentile: float = 99.999

    def label(self) -> str:
        method = f"percentile {self.percentile:g}" if self.method == "percentile" else self.method
        parts = [method, "per-channel" if self.per_channel else "per-tensor", f"fp32: {self.fp32_policy}"]
        if self.reduce_range:
            parts.append("7-bit weights")
        return ", ".join(parts)


DEFAULT = Setting(method="percentile", per_channel=True, fp32_policy="none")
"""The best of the grid on a Fashion-MNIST bundle (validation agreement 96.0 %, top-1 -0.17 points; MinMax -1.5)."""

UNLABELLED_DEFAULT = Setting(method="minmax", per_channel=True, fp32_policy="stem+classifier")
"""For the embedded Lite0 at 224 px: the best measured there (88.0 % agreement) and calibrated in seconds, where
the histogram methods (percentile, entropy) take minutes at that size."""

SEARCH: tuple[Setting, ...] = tuple(
    Setting(method=method, per_channel=per_channel, fp32_policy=policy)
    for method in METHODS
    for per_channel in (True, False)
    for policy in FP32_POLICIES
)
"""Every combination of calibration method, per-channel weights and fp32 nodes (12 settings)."""

FALLBACKS: tuple[Setting, ...] = (
    Setting(method="minmax", per_channel=True, fp32_policy="stem+classifier"),
    Setting(method="entropy", per_channel=True, fp32_policy="stem+classifier"),
)
"""Tried after ``DEFAULT``, in order, when it misses the bound (the next best on the Fashion-MNIST bundle)."""

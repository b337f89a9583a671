"""The names of the ONNX graph's tensors: every bundle's ``model.onnx`` has one input and these two outputs.

Training writes them at export, serving and evaluation read them; nothing else spells them out.
"""

from __future__ import annotations

INPUT = "images"
"""Preprocessed images, float32 ``[batch, 3, crop, crop]`` (NCHW), the batch size dynamic."""

LOGITS = "logits"
"""Class scores before the softmax, float32 ``[batch, num_classes]``."""

EMBEDDING = "embedding"
"""The pooled backbone features (the classifier's input), float32 ``[batch, embedding_size]``."""

OUTPUTS = (LOGITS, EMBEDDING)
"""Both outputs, in the order the graph returns them."""

"""The contract between training and serving: the model spec, bundle I/O and evaluation preprocessing.

Importing ``modelspec`` never imports torch; ``modelspec.network`` (the PyTorch side) does.
"""

from modelspec.bundle import (
    ONNX_FILE,
    SPEC_FILE,
    WEIGHTS_FILE,
    Bundle,
    BundleError,
    list_models,
    list_versions,
    read_bundle,
    read_spec,
    remove_stale_temp_dirs,
    versions_to_open,
    write_bundle,
)
from modelspec.decode import DecodeLimits, ImageError, decode, load_input
from modelspec.preprocess import preprocess, resize_and_crop, to_rgb
from modelspec.spec import Architecture, ModelSpec, Preprocessing, Provenance, check_model_name

__all__ = [
    "ONNX_FILE",
    "SPEC_FILE",
    "WEIGHTS_FILE",
    "Architecture",
    "Bundle",
    "BundleError",
    "DecodeLimits",
    "ImageError",
    "ModelSpec",
    "Preprocessing",
    "Provenance",
    "check_model_name",
    "decode",
    "list_models",
    "list_versions",
    "load_input",
    "preprocess",
    "read_bundle",
    "read_spec",
    "remove_stale_temp_dirs",
    "resize_and_crop",
    "to_rgb",
    "versions_to_open",
    "write_bundle",
]

"""One ONNX Runtime session builder and one version rule, shared by the service, the batch command and training."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from modelspec import versions_to_open
from modelspec.runtime import Spinning, build_session


def doubling_graph(path: Path) -> Path:
    """Any ONNX file, not only a bundle's ``model.onnx`` (an int8 graph will be opened the same way)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "double", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


SPIN_ENTRIES = {"never": ("0", "0"), "within-run": ("1", "1"), "always": ("1", "0")}
"""(session.intra_op.allow_spinning, session.force_spinning_stop) for each way of waiting."""


@pytest.mark.parametrize(("threads", "spinning"), [(None, None), (1, "never"), (2, "within-run"), (2, "always")])
def test_build_session_runs_any_onnx_file_with_the_asked_threads(
    tmp_path: Path, threads: int | None, spinning: Spinning | None
) -> None:
    session = build_session(doubling_graph(tmp_path / "other-name.onnx"), threads=threads, spinning=spinning)
    (y,) = session.run(["y"], {"x": np.array([[1, 2, 3]], dtype=np.float32)})
    np.testing.assert_array_equal(y, [[2, 4, 6]])
    options = session.get_session_options()
    if threads is not None:
        assert options.intra_op_num_threads == threads
    if spinning is not None:
        entries = ("session.intra_op.allow_spinning", "session.force_spinning_stop")
        assert tuple(options.get_session_config_entry(entry) for entry in entries) == SPIN_ENTRIES[spinning]
    assert session.get_providers() == ["CPUExecutionProvider"]


def test_importing_modelspec_runtime_does_not_import_onnxruntime() -> None:
    code = "import sys, modelspec, modelspec.runtime; print('onnxruntime' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_versions_to_open_newest_first_or_the_requested_one() -> None:
    assert versions_to_open([1, 3, 2]) == [3, 2, 1]
    assert versions_to_open({2: "b", 10: "a"}) == [10, 2]  # numbers, not names: 10 is newer than 2
    assert versions_to_open([1, 3, 2], requested=2) == [2]
    assert versions_to_open([1, 3], requested=2) == []
    assert versions_to_open([]) == []

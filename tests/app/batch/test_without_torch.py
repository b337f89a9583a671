"""The batch command runs in the serving install: no PyTorch is ever imported (CSV, JSONL with .npy, Parquet);
without pyarrow (the serving image), CSV and JSONL still work and Parquet says what to install."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.app.batch.conftest import make_images

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent(
    """
    import sys
    from importlib.abc import MetaPathFinder

    BLOCKED = {"torch", "torchvision", "timm", *sys.argv[3].split(",")} - {""}

    class NoTorch(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is not installed (blocked by the test)")
            return None

    sys.meta_path.insert(0, NoTorch())
    from app.batch.__main__ import main

    folder, out = sys.argv[1], sys.argv[2]
    for name, extra in (("out.csv", ["--embeddings"]), ("out.jsonl", []), ("out.parquet", ["--embeddings"])):
        status = main([folder, "--output", f"{out}/{name}", "--quiet", *extra])
        assert status == (2 if "pyarrow" in BLOCKED and name.endswith(".parquet") else 0), name
    assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED]
    print("classified without", sorted(BLOCKED))
    """
)


@pytest.mark.parametrize("also_blocked", ["", "pyarrow,ray"])
def test_the_batch_command_never_imports_torch(also_blocked: str, tiny_models_dir: Path, tmp_path: Path) -> None:
    make_images(tmp_path / "images", 6)
    env = {**os.environ, "IMGCLF_MODELS_DIR": str(tiny_models_dir), "IMGCLF_DEFAULT_MODEL": ""}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "images"), str(tmp_path), also_blocked],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "classified without" in result.stdout
    assert (tmp_path / "out.csv.embeddings.npy").exists() and (tmp_path / "out.jsonl").exists()
    if also_blocked:
        assert "Parquet output needs pyarrow: pip install 'imgclf[parquet]'" in result.stderr
        assert not (tmp_path / "out.parquet").exists()
    else:
        assert (tmp_path / "out.parquet").exists()

"""The batch command runs in the serving install: no PyTorch is ever imported (CSV, JSONL with .npy, Parquet)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.app.batch.conftest import make_images

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent(
    """
    import sys
    from importlib.abc import MetaPathFinder

    BLOCKED = {"torch", "torchvision", "timm"}

    class NoTorch(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is not installed (blocked by the test)")
            return None

    sys.meta_path.insert(0, NoTorch())
    from app.batch.__main__ import main

    folder, out = sys.argv[1], sys.argv[2]
    for name, extra in (("out.csv", ["--embeddings"]), ("out.jsonl", []), ("out.parquet", ["--embeddings"])):
        assert main([folder, "--output", f"{out}/{name}", "--quiet", *extra]) == 0
    assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED]
    print("classified without torch")
    """
)


def test_the_batch_command_never_imports_torch(tiny_models_dir: Path, tmp_path: Path) -> None:
    make_images(tmp_path / "images", 6)
    env = {**os.environ, "IMGCLF_MODELS_DIR": str(tiny_models_dir), "IMGCLF_DEFAULT_MODEL": ""}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "images"), str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "classified without torch" in result.stdout
    assert (tmp_path / "out.csv.embeddings.npy").exists() and (tmp_path / "out.parquet").exists()

"""A serving-only install has no PyTorch: the ONNX path must never import it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys
    from importlib.abc import MetaPathFinder

    class NoTorch(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "torchvision", "timm"}:
                raise ImportError(f"{name} is not installed (blocked by the test)")
            return None

    sys.meta_path.insert(0, NoTorch())

    import io
    from fastapi.testclient import TestClient
    from PIL import Image
    from app.config import Settings
    from app.main import create_app

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(buffer, format="PNG")
    settings = Settings(models_dir=sys.argv[1], default_model=None, watch_interval=0)
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/predict", content=buffer.getvalue(), headers={"content-type": "image/png"})
        assert response.status_code == 200, response.text
        assert client.get("/v1/models/tiny").json()["backend"] == "onnx"
    assert not [m for m in sys.modules if m.split(".")[0] in {"torch", "torchvision", "timm"}]
    print("served without torch")
    """
)


def test_onnx_serving_never_imports_torch(tiny_models_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_models_dir)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "served without torch" in result.stdout

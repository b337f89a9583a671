"""One-off serving check on a machine with an NVIDIA GPU (run by scripts/gpu_check_serving.sh).

1. Builds the default bundle (EfficientNet-Lite0, ImageNet) into a temporary models folder.
2. Checks that the torch backend on CUDA in fp16 gives the same top-5 as ONNX Runtime in fp32 on the CPU, for
   scikit-image's chelsea, coffee and astronaut photos (the service's own decode + preprocess), and fp32 on CUDA too.
3. Runs the serving benchmark (``python -m scripts.bench.serving``) against it: the in-process limit and the real
   service over HTTP, on CUDA.
4. Prints a short table and writes everything to ``--output``.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

PHOTOS = ("chelsea", "coffee", "astronaut")


def build_bundle(models_dir: Path) -> Path:
    """The default bundle; falls back to the TorchScript ONNX exporter if the dynamo one fails on this torch."""
    import training.export
    from modelspec import tensors
    from training.pretrained import export_pretrained

    started = time.perf_counter()
    try:
        bundle = export_pretrained(models_dir)
    except Exception as exc:  # an onnxscript / torch version mismatch, typically
        print(f"dynamo ONNX export failed ({type(exc).__name__}: {exc}); retrying with the TorchScript exporter")
        import torch

        def legacy_export(network, sample, path):  # type: ignore[no-untyped-def]
            torch.onnx.export(
                network,
                (sample,),
                str(path),
                input_names=[tensors.INPUT],
                output_names=list(tensors.OUTPUTS),
                opset_version=17,
                dynamo=False,
                dynamic_axes={name: {0: "batch"} for name in (tensors.INPUT, *tensors.OUTPUTS)},
            )

        training.export.export_onnx = legacy_export
        bundle = export_pretrained(models_dir)
    print(f"built {bundle.path} in {time.perf_counter() - started:.1f} s")
    return bundle.path


def top5_parity(bundle_path: Path, device: str = "cuda") -> list[dict[str, object]]:
    import skimage.data
    import torch
    from PIL import Image

    from app.engine.backends.ort import OnnxBackend
    from app.engine.backends.pytorch import TorchBackend
    from app.engine.postprocess import top_k
    from modelspec import read_bundle
    from modelspec.decode import DecodeLimits, load_input

    bundle = read_bundle(bundle_path)
    prep = bundle.spec.preprocessing
    backends = {
        "onnx-fp32-cpu": OnnxBackend(bundle, 4),
        "torch-fp32-cuda": TorchBackend(bundle, device, fp16=False),
        "torch-fp16-cuda": TorchBackend(bundle, device, fp16=True),
    }
    print(f"device: {torch.cuda.get_device_name(0) if device == 'cuda' else device}, torch {torch.__version__}")
    rows = []
    for name in PHOTOS:
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB").save(buffer, "JPEG", quality=95)
        batch = load_input(buffer.getvalue(), prep, DecodeLimits(max_pixels=40_000_000))[None]
        tops = {key: top_k(backend.run(batch)[0][0], 5) for key, backend in backends.items()}
        reference = tops["onnx-fp32-cpu"]
        row: dict[str, object] = {"photo": name, "top5": [bundle.spec.labels[i] for i, _ in reference]}
        for key, top in tops.items():
            if key == "onnx-fp32-cpu":
                continue
            row[f"{key} same top-5"] = [i for i, _ in top] == [i for i, _ in reference]
            row[f"{key} max prob diff"] = max(abs(p - q) for (_, p), (_, q) in zip(top, reference, strict=True))
        rows.append(row)
        print(json.dumps(row))
    for backend in backends.values():
        backend.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True, help="markdown report")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per HTTP load point")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible to torch: this check is for the GPU machine")
    bundle_path = build_bundle(args.models_dir)
    rows = top5_parity(bundle_path)
    bench_md = args.output.with_name(args.output.stem + "-bench.md")
    command = [
        sys.executable,
        "-m",
        "scripts.bench.serving",
        "--models-dir",
        str(args.models_dir),
        "--seconds",
        str(args.seconds),
        "--in-process-seconds",
        "2",
        "--pairs",
        "2",
        "--output",
        str(bench_md),
    ]
    print("running", " ".join(command), flush=True)
    bench = subprocess.run(command, cwd=ROOT, check=False)
    same = all(value for row in rows for key, value in row.items() if key.endswith("same top-5"))
    lines = [
        "# GPU serving check",
        "",
        f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}.",
        "",
        "| photo | top-5 (ONNX fp32, CPU) | fp32 CUDA same | fp16 CUDA same | fp16 max prob diff |",
        "|---|---|---|---|---:|",
        *(
            f"| {row['photo']} | {', '.join(row['top5'])} | {row['torch-fp32-cuda same top-5']} | "  # type: ignore[arg-type]
            f"{row['torch-fp16-cuda same top-5']} | {row['torch-fp16-cuda max prob diff']:.4f} |"
            for row in rows
        ),
        "",
        f"fp16 keeps the top-5 on every photo: **{same}**.",
        "",
    ]
    if bench_md.exists():
        lines.append(bench_md.read_text())
    else:
        lines.append(f"The benchmark failed (exit status {bench.returncode}); see its output above.")
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if same and bench.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

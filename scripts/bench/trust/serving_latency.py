"""Predict p50 at c=1 through the real service, with and without the trust scorer: the default Lite0 bundle as it
is (no trust data) and the same network with trust data (a Mahalanobis reference built from 50,000 synthetic
training embeddings of its size, the export default), both served by one ``python -m app``, one 640x480 JPEG per
request, the two models alternating request by request.

    python -m scripts.bench.trust.serving_latency [--rounds 300] [--models-dir models]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from modelspec import read_bundle, write_bundle
from modelspec.trust import TRUST_FILE, build_trust, save_tensors
from scripts.bench.images import test_jpeg

TRAINING_IMAGES = 50_000
VALIDATION_IMAGES = 2_000


def trusted_copy(source: Path, models_dir: Path, name: str) -> None:
    """``source``'s network under ``name`` with trust data fitted on synthetic outputs of its sizes."""
    bundle = read_bundle(source)
    spec = bundle.spec
    rng = np.random.default_rng(0)
    classes, dims = spec.num_classes, spec.embedding_size
    centres = rng.normal(size=(classes, dims)).astype(np.float32)
    train_labels = rng.integers(0, classes, TRAINING_IMAGES)
    train = centres[train_labels] + rng.normal(size=(TRAINING_IMAGES, dims)).astype(np.float32)
    val_labels = rng.integers(0, classes, VALIDATION_IMAGES)
    val = centres[val_labels] + rng.normal(size=(VALIDATION_IMAGES, dims)).astype(np.float32)
    logits = (val @ centres.T / np.sqrt(dims)).astype(np.float32)
    trust, tensors = build_trust(logits, val_labels, val, train, train_labels)
    copies = {file: (lambda target, file=file: shutil.copyfile(bundle.file(file), target)) for file in spec.files}
    new_spec = spec.model_copy(update={"name": name, "trust": trust, "files": {}, "version": None})
    write_bundle(models_dir, new_spec, {**copies, TRUST_FILE: lambda path: save_tensors(path, tensors)})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    args = parser.parse_args()
    source = max((args.models_dir / "efficientnet-lite0").iterdir(), key=lambda p: int(p.name))
    with tempfile.TemporaryDirectory() as work:
        models = Path(work)
        shutil.copytree(source, models / "plain" / "1")
        spec_path = models / "plain" / "1" / "model.json"
        spec_path.write_text(spec_path.read_text().replace('"name": "efficientnet-lite0"', '"name": "plain"', 1))
        trusted_copy(source, models, "trusted")
        port = free_port()
        env = dict(os.environ, IMGCLF_MODELS_DIR=str(models), IMGCLF_DEFAULT_MODEL="plain", IMGCLF_PORT=str(port),
                   IMGCLF_HOST="127.0.0.1", IMGCLF_WATCH_INTERVAL="0")  # fmt: skip
        server = subprocess.Popen([sys.executable, "-m", "app"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=url, timeout=60) as client:
                for _ in range(600):
                    try:
                        if client.get("/health/ready").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.2)
                jpeg = test_jpeg((640, 480))
                headers = {"Content-Type": "image/jpeg"}
                times: dict[str, list[float]] = {"plain": [], "trusted": []}
                for round_ in range(args.rounds + 20):
                    for name in ("plain", "trusted"):
                        start = time.perf_counter()
                        answer = client.post(f"/v1/models/{name}/predict", content=jpeg, headers=headers)
                        elapsed = time.perf_counter() - start
                        assert answer.status_code == 200, answer.text
                        if round_ >= 20:  # the first rounds warm up
                            times[name].append(elapsed)
                ood = client.post("/v1/models/trusted/predict", content=jpeg, headers=headers).json()["results"][0]
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(30)
    without, with_ = (statistics.median(times[n]) * 1e3 for n in ("plain", "trusted"))
    paired = statistics.median(b - a for a, b in zip(times["plain"], times["trusted"], strict=True)) * 1e3
    print(f"{args.rounds} requests each, c=1, 640x480 JPEG, alternating; ood_score {ood['ood_score']:.1f}")  # noqa: T201
    print(f"predict p50 without trust data: {without:.2f} ms")  # noqa: T201
    print(f"predict p50 with trust data (calibration + Mahalanobis OOD): {with_:.2f} ms")  # noqa: T201
    print(f"ratio {with_ / without:.3f}x; paired median difference {paired:+.3f} ms")  # noqa: T201


if __name__ == "__main__":
    main()

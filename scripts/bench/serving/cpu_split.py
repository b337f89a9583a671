"""``python -m scripts.bench.serving.cpu_split``: where the service's CPU goes per image at 16 clients.

Starts the service, loads it with 16 clients on ``/v1/predict`` (a 640x480 JPEG, raw body or multipart) and samples
its threads with py-spy (in the dev install; native frames included, so ONNX Runtime's own threads count), then
sorts every sample into the stage it belongs to (model, JPEG decode, resize and crop, normalise, batching,
multipart, JSON, HTTP and the event loop) by the frames on its stack. With the server's CPU time per image over the
same interval, each stage's share becomes milliseconds of CPU per image.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from scripts.bench import ROOT
from scripts.bench.images import test_jpeg
from scripts.bench.load import Request, load_generator
from scripts.bench.machine import load_average
from scripts.bench.serving.service import serve

# (stage, substrings of a frame): the frame nearest the leaf that names a stage takes the sample (a decode runs
# under the middleware's and the event loop's frames too); for one frame, the first stage listed wins.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model (ONNX Runtime)", ("onnxruntime", "libonnxruntime", "InferenceSession", "backends/ort.py")),
    ("JPEG decode", ("decode.py:decode", "ImageFile.py", "JpegImagePlugin", "simplejpeg", "decode_image")),
    ("resize + crop", ("resize_and_crop", "Image.py:resize", "Image.py:crop", "Image.py:reduce")),
    ("normalise", ("preprocess.py:normalize", "normalize (modelspec")),
    ("batching (stack, unbatch)", ("batching.py",)),
    ("post-processing", ("postprocess.py",)),
    ("multipart", ("multipart", "formparsers")),
    ("socket writes", ("RequestResponseCycle.send", "uv_try_write", "uv__write")),
    ("JSON (encode, validate, dump)", ("api/encode.py", "orjson", "json.", "serialize_response", "pydantic")),
    ("metrics and logging", ("prometheus_client", "metrics_middleware", "logging/")),
    ("engine glue (pipeline, admission)", ("app/engine/",)),
    (
        "HTTP, middleware, event loop",
        ("uvicorn", "httptools", "starlette", "fastapi", "asyncio", "anyio", "uvloop", "app/api/"),
    ),  # fmt: skip
)
OTHER = "other"
WAITING = (
    "PyThread_acquire_lock", "pthread_cond_wait", "pthread_cond_timedwait", "epoll_wait", "epoll_pwait", "sem_wait",
    "sem_timedwait", "take_gil", "__GI___poll", "futex_wait", "nanosleep", "select (",
)  # fmt: skip
"""Leaf frames of a thread that waits (for a lock, the GIL, a queue, the network): py-spy's idle detection does not
see through native frames, so these samples are dropped here; the rest are on the CPU."""


def waiting(frames: Sequence[str]) -> bool:
    return any(needle in frame for frame in frames[-4:] for needle in WAITING)


def classify(stack: str) -> str | None:
    """The stage a sample's stack belongs to; None for a thread that waits."""
    frames = stack.split(";")
    if waiting(frames):
        return None
    for frame in reversed(frames):
        for stage, needles in STAGES:
            if any(needle in frame for needle in needles):
                return stage
    return OTHER


def split(raw: Path) -> dict[str, int]:
    """Samples per stage, from py-spy's ``--format raw`` output (collapsed stacks: ``frames count`` per line)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        stage = classify(stack) if stack and count.isdigit() else None
        if stage is not None:
            counts[stage] += int(count)
    return dict(counts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--multipart", action="store_true", help="send the image as a multipart 'file' field")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--env", nargs="*", default=[], metavar="NAME=VALUE", help="service settings")
    beside_python = Path(sys.executable).with_name("py-spy")  # the dev install puts it in the venv's bin
    default_py_spy = str(beside_python) if beside_python.exists() else shutil.which("py-spy") or "py-spy"
    parser.add_argument("--py-spy", default=default_py_spy)
    parser.add_argument("--keep", type=Path, default=None, help="copy py-spy's collapsed stacks here")
    args = parser.parse_args(argv)
    image = test_jpeg((640, 480))
    if args.multipart:
        boundary = "imgclfbenchboundary"
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        head += "Content-Type: image/jpeg\r\n\r\n"
        body = head.encode() + image + f"\r\n--{boundary}--\r\n".encode()
        request = Request("/v1/predict", body, f"multipart/form-data; boundary={boundary}")
    else:
        request = Request("/v1/predict", image, "image/jpeg")
    env = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory(prefix="imgclf-cpu-split-") as tmp:
        work = Path(tmp)
        generate = load_generator("auto", work)
        with serve(args.models_dir.resolve(), args.model, env, work, "cpu-split") as server:
            generate(server.port, request, 16, 3.0)  # warm-up
            raw = work / "profile.txt"
            spy = subprocess.Popen(
                [args.py_spy, "record", "--pid", str(server.process.pid), "--native", "--rate", "250",
                 "--format", "raw", "--output", str(raw), "--duration", str(int(args.seconds))],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            time.sleep(1.0)  # py-spy attaches
            cpu_before, average = server.cpu_seconds(), load_average()
            load = generate(server.port, request, 16, args.seconds - 2.0)
            cpu = server.cpu_seconds() - cpu_before
            _, errors = spy.communicate(timeout=args.seconds + 30)
            if not raw.exists():
                raise SystemExit(f"py-spy wrote no profile: {errors.decode(errors='replace')[-2000:]}")
            counts = split(raw)
            if args.keep is not None:
                shutil.copyfile(raw, args.keep)
    total = sum(counts.values()) or 1
    per_image = cpu * 1000 / max(1, load.requests)
    print(
        f"{'multipart' if args.multipart else 'raw body'}, c=16: {load.rate:.1f} img/s, {per_image:.2f} CPU ms/img "
        f"(load {average:.2f}); {total} samples"
    )
    for stage, count in sorted(counts.items(), key=lambda item: -item[1]):
        print(f"  {stage:32s} {count / total:6.1%}  {per_image * count / total:6.2f} ms/img")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

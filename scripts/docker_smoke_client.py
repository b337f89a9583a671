"""HTTP checks for scripts/docker-smoke.sh, with the standard library only.

    python scripts/docker_smoke_client.py wait-ready URL --timeout S      print the epoch time readiness was seen
    python scripts/docker_smoke_client.py predict URL IMAGE --expect WORD [--model NAME]
    python scripts/docker_smoke_client.py wait-model URL NAME --version N [--exact] --timeout S  (key: $IMGCLF_API_KEY)
    python scripts/docker_smoke_client.py seconds-since START_RFC3339 END_EPOCH

Each command exits 0 on success and 1 with a message on stderr otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any


def request(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 30) -> Any:
    """The decoded JSON body of a request; ``urllib.error.HTTPError`` for a status >= 400."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as response:
        body = response.read()
    return json.loads(body) if body else None


def wait_ready(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            request(f"{args.url}/health/ready", timeout=2)
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:  # refused, reset, not JSON yet
            last = type(exc).__name__
        else:
            print(f"{time.time():.3f}")
            return 0
        time.sleep(0.05)
    print(f"{args.url}/health/ready not ready after {args.timeout:.0f} s (last: {last})", file=sys.stderr)
    return 1


def top_predictions(body: Any) -> list[dict[str, Any]]:
    """The ranked predictions of the first image, whatever envelope the response uses."""
    if isinstance(body, list) and body and all(isinstance(p, dict) and "label" in p for p in body):
        return body
    if isinstance(body, list):
        for item in body:
            found = top_predictions(item)
            if found:
                return found
    if isinstance(body, dict):
        for key in ("predictions", "results", "images", "data"):
            if key in body:
                found = top_predictions(body[key])
                if found:
                    return found
    return []


def predict(args: argparse.Namespace) -> int:
    path = f"/v1/models/{args.model}/predict" if args.model else "/v1/predict"
    with open(args.image, "rb") as handle:
        image = handle.read()
    try:
        body = request(f"{args.url}{path}?top_k=3", data=image, headers={"Content-Type": "image/jpeg"})
    except urllib.error.HTTPError as exc:
        print(f"POST {path}: HTTP {exc.code} {exc.read()[:300]!r}", file=sys.stderr)
        return 1
    predictions = top_predictions(body)
    if not predictions:
        print(f"POST {path}: no predictions in {json.dumps(body)[:300]}", file=sys.stderr)
        return 1
    best = predictions[0]
    summary = ", ".join(f"{p['label']} {p['score']:.2f}" for p in predictions[:3])
    print(f"POST {path}: {summary}")
    if args.expect and args.expect.lower() not in str(best["label"]).lower():
        print(f"top-1 is {best['label']!r}, expected a label containing {args.expect!r}", file=sys.stderr)
        return 1
    return 0


def model_version(url: str, name: str) -> int | None:
    try:
        body = request(f"{url}/v1/models/{name}", timeout=5)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    version = body.get("version") if isinstance(body, dict) else None
    return int(version) if version is not None else None


def wait_model(args: argparse.Namespace) -> int:
    """Wait until the default version of NAME is N (or newer, without --exact); after the grace period, ask for a
    rescan with the admin key."""
    started = time.monotonic()
    reloaded = False
    while time.monotonic() - started < args.timeout:
        version = model_version(args.url, args.name)
        if version is not None and (version == args.version or (version > args.version and not args.exact)):
            how = "after POST /v1/admin/reload" if reloaded else "picked up by the models-folder watcher"
            print(f"{args.name} version {version} served after {time.monotonic() - started:.1f} s ({how})")
            return 0
        if args.api_key and not reloaded and time.monotonic() - started > args.grace:
            request(f"{args.url}/v1/admin/reload", data=b"", headers={"X-API-Key": args.api_key})
            reloaded = True
            continue
        time.sleep(0.25)
    wanted = f"version {args.version}" if args.exact else f"version >= {args.version}"
    print(f"{args.name} {wanted} not served after {args.timeout:.0f} s", file=sys.stderr)
    return 1


def seconds_since(args: argparse.Namespace) -> int:
    # Docker reports nanoseconds ("2024-01-02T03:04:05.123456789Z"); Python parses up to microseconds.
    stamp = args.start.rstrip("Z")
    whole, _, fraction = stamp.partition(".")
    start = datetime.fromisoformat(f"{whole}.{(fraction or '0')[:6]}+00:00").timestamp()
    print(f"{args.end - start:.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    ready = commands.add_parser("wait-ready")
    ready.add_argument("url")
    ready.add_argument("--timeout", type=float, default=60)
    ready.set_defaults(handler=wait_ready)
    pred = commands.add_parser("predict")
    pred.add_argument("url")
    pred.add_argument("image")
    pred.add_argument("--expect", default="")
    pred.add_argument("--model", default="")
    pred.set_defaults(handler=predict)
    model = commands.add_parser("wait-model")
    model.add_argument("url")
    model.add_argument("name")
    model.add_argument("--version", type=int, default=1)
    model.add_argument("--exact", action="store_true", help="this version, not a newer one (after a rollback)")
    model.add_argument("--timeout", type=float, default=60)
    model.add_argument("--grace", type=float, default=20, help="seconds to wait for the watcher before reloading")
    model.add_argument("--api-key", default=os.environ.get("IMGCLF_API_KEY", ""), help="default: $IMGCLF_API_KEY")
    model.set_defaults(handler=wait_model)
    since = commands.add_parser("seconds-since")
    since.add_argument("start")
    since.add_argument("end", type=float)
    since.set_defaults(handler=seconds_since)
    args = parser.parse_args()
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

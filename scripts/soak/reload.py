"""Hot reload under load: new versions appear while clients keep predicting; no request may fail."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from scripts.bench.machine import load_average
from scripts.soak.bundles import copy_as_new_version
from scripts.soak.client import Records, closed_loop
from scripts.soak.context import Context, wait_until

CLIENTS = 16


def measure(ctx: Context) -> dict[str, Any]:
    ctx.fresh_models()
    sizes = ctx.sizes
    records: list[Records] = []
    served_after: list[float] = []
    load_before = load_average()
    with ctx.service("reload", IMGCLF_WATCH_INTERVAL="0.5", IMGCLF_VERSIONS_LOADED="1") as server:
        hammer = threading.Thread(
            target=lambda: records.append(
                closed_loop(server.port, ctx.predict(), CLIENTS, seconds=sizes.reload_seconds)
            )
        )
        hammer.start()
        pause = sizes.reload_seconds / (sizes.reload_versions + 1)
        for _ in range(sizes.reload_versions):
            time.sleep(pause)
            written = copy_as_new_version(ctx.models_dir, ctx.model)
            at = time.perf_counter()
            if wait_until(lambda v=written.version: _served_version(server.get, ctx.model) == v, 30):  # type: ignore[misc]
                served_after.append(time.perf_counter() - at)
        hammer.join()
        final = _served_version(server.get, ctx.model)
    [run] = records
    result = {
        "requests": len(run.answers),
        "statuses": run.statuses(),
        "failed": len(run.answers) - run.count(200),
        "versions_written": sizes.reload_versions,
        "served_after_s": served_after,
        "final_version": final,
        "loads": [load_before, load_average()],
    }
    print(f"  {result}", flush=True)
    return result


def _served_version(get: Any, model: str) -> int:
    status, body = get(f"/v1/models/{model}")
    return int(json.loads(body)["version"]) if status == 200 else 0


def render(result: dict[str, Any]) -> list[str]:
    picked = ", ".join(f"{s:.1f}" for s in result["served_after_s"])
    return [
        "### Hot reload under load",
        "",
        f"- **{result['requests']:,} requests at {CLIENTS} connections while {result['versions_written']} new "
        f"versions were written (one version loaded at a time): {result['failed']} failed** (statuses "
        f"{result['statuses']}); each new version served {picked} s after its write (watch interval 0.5 s); "
        f"finally serving version {result['final_version']}. Load average {result['loads'][0]:.1f} -> "
        f"{result['loads'][1]:.1f}.",
        "",
    ]

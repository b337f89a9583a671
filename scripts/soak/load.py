"""Sustained load: many requests at a steady concurrency; every answer must be a 200 and memory must not grow."""

from __future__ import annotations

from typing import Any

from scripts.bench.machine import load_average
from scripts.soak.client import closed_loop
from scripts.soak.context import Context, rss_mib

WARM_UP = 300


def measure(ctx: Context) -> dict[str, Any]:
    ctx.fresh_models()
    sizes = ctx.sizes
    with ctx.service("load") as server:
        closed_loop(server.port, ctx.predict(), sizes.load_clients, total=WARM_UP)
        before = rss_mib(server.process.pid)
        load_before = load_average()
        records = closed_loop(server.port, ctx.predict(), sizes.load_clients, total=sizes.load_requests)
        after = rss_mib(server.process.pid)
    result = {
        "requests": len(records.answers),
        "clients": sizes.load_clients,
        "seconds": records.seconds,
        "statuses": records.statuses(),
        "errors": len(records.answers) - records.count(200),
        "p50_ms": records.percentile_ms(50),
        "p99_ms": records.percentile_ms(99),
        "rss_before_mib": before,
        "rss_after_mib": after,
        "loads": [load_before, load_average()],
    }
    print(
        f"  {result['requests']} requests, {result['errors']} errors, RSS {before:.0f} -> {after:.0f} MiB", flush=True
    )
    return result


def render(result: dict[str, Any]) -> list[str]:
    growth = result["rss_after_mib"] / result["rss_before_mib"] - 1
    return [
        "### Sustained load",
        "",
        f"- **{result['requests']:,} requests at {result['clients']} connections: {result['errors']} errors** "
        f"(statuses {result['statuses']}), {result['requests'] / result['seconds']:.1f} req/s, p50 "
        f"{result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms.",
        f"- **Memory: {result['rss_before_mib']:.0f} MiB -> {result['rss_after_mib']:.0f} MiB ({growth:+.1%})** "
        f"resident, after a {WARM_UP}-request warm-up -> after the run; load average "
        f"{result['loads'][0]:.1f} -> {result['loads'][1]:.1f}.",
        "",
    ]

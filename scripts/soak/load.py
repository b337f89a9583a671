"""Sustained load: many requests at a steady concurrency; every answer must be a 200 and memory must not grow.

The run goes in quarters, the server's resident memory read after each: the first quarter brings the service to its
working set under load (ONNX Runtime's arenas for full batches on every worker, the decode threads' buffers), so
growth is counted from there; a leak would keep growing over the next three. Shedding is relaxed (a 60 s queue
time-out) so that the figure is about failures and leaks, not about how many clients this machine can serve in 2 s:
on a busy shared machine 64 clients can be more than that, and the overload part measures shedding.
"""

from __future__ import annotations

from typing import Any

from scripts.bench.machine import load_average
from scripts.soak.client import closed_loop
from scripts.soak.context import Context, rss_mib

QUEUE_TIMEOUT = 60
QUARTERS = 4


def measure(ctx: Context) -> dict[str, Any]:
    ctx.fresh_models()
    sizes = ctx.sizes
    statuses: dict[int, int] = {}
    seconds, answers, p50s, p99s = 0.0, 0, [], []
    load_before = load_average()
    with ctx.service("load", IMGCLF_QUEUE_TIMEOUT=str(QUEUE_TIMEOUT)) as server:
        rss = [rss_mib(server.process.pid)]
        for _ in range(QUARTERS):
            records = closed_loop(server.port, ctx.predict(), sizes.load_clients, total=sizes.load_requests // QUARTERS)
            rss.append(rss_mib(server.process.pid))
            seconds += records.seconds
            answers += len(records.answers)
            p50s.append(records.percentile_ms(50))
            p99s.append(records.percentile_ms(99))
            for status, count in records.statuses().items():
                statuses[status] = statuses.get(status, 0) + count
    result = {
        "requests": answers,
        "clients": sizes.load_clients,
        "seconds": seconds,
        "statuses": dict(sorted(statuses.items())),
        "errors": answers - statuses.get(200, 0),
        "p50_ms": max(p50s),
        "p99_ms": max(p99s),
        "rss_mib": rss,
        "loads": [load_before, load_average()],
    }
    print(f"  {answers} requests, {result['errors']} errors, RSS {', '.join(f'{r:.0f}' for r in rss)} MiB", flush=True)
    return result


def render(result: dict[str, Any]) -> list[str]:
    rss = result["rss_mib"]
    growth = rss[-1] / rss[1] - 1
    return [
        "### Sustained load",
        "",
        f"- **{result['requests']:,} requests at {result['clients']} connections: {result['errors']} errors** "
        f"(statuses {result['statuses']}), {result['requests'] / result['seconds']:.1f} req/s, p50 "
        f"{result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms (the worst quarter's; "
        f"`IMGCLF_QUEUE_TIMEOUT={QUEUE_TIMEOUT}`: no shedding, see below).",
        f"- **Memory after the first quarter -> at the end: {rss[1]:.0f} -> {rss[-1]:.0f} MiB ({growth:+.1%})**; "
        f"resident memory ready, then after each quarter: {', '.join(f'{r:.0f}' for r in rss)} MiB. Load average "
        f"{result['loads'][0]:.1f} -> {result['loads'][1]:.1f}.",
        "",
    ]

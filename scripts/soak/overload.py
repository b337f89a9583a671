"""Overload: the peak throughput, then far more clients than the service can serve, then one lone request.

Goodput counts the answers a client still wanted: 200s that came within ``deadline`` seconds. The clients send
again the moment an answer is in and ignore Retry-After (as wrk does): the worst case for a server that refuses.
The peak's concurrency is found first; then rounds alternate the peak and the overload, so that a drift in the
background load of a shared machine hits both alike, and the medians are compared. After each overload round, the
very next request is timed.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from scripts.bench.machine import load_average
from scripts.soak import goodput
from scripts.soak.client import closed_loop, one_request
from scripts.soak.context import Context, metric_sum, rss_mib

WARM_UP_SECONDS = 2.0
RECOVERY_LIMIT_SECONDS = 30.0


def measure(ctx: Context) -> dict[str, Any]:
    ctx.fresh_models()
    sizes, request = ctx.sizes, ctx.predict()
    result: dict[str, Any] = {
        "deadline": sizes.deadline,
        "generator": goodput.generator_name(),
        "loads": [load_average()],
        "scan": {},
        "rounds": [],
    }

    def point(clients: int, seconds: float) -> dict[str, Any]:
        found = goodput.measure(server.port, request, clients, seconds, sizes.deadline, ctx.work).summary()
        print(f"  {clients} clients: {found}", flush=True)
        return {"clients": clients, **found}

    with ctx.service("overload") as server:
        result["alone_p50_ms"] = closed_loop(server.port, request, 1, seconds=sizes.point_seconds / 2).percentile_ms(50)
        for clients in sizes.peak_clients:
            goodput.measure(server.port, request, clients, WARM_UP_SECONDS, sizes.deadline, ctx.work)
            result["scan"][clients] = point(clients, sizes.point_seconds)
        best = max(sizes.peak_clients, key=lambda c: result["scan"][c]["goodput"])
        for _ in range(sizes.overload_rounds):
            peak = point(best, sizes.point_seconds)
            rss_before = rss_mib(server.process.pid)
            over = point(sizes.overload_clients, sizes.overload_seconds)
            over["rss_mib"] = [rss_before, rss_mib(server.process.pid)]
            result["rounds"].append({"peak": peak, "overload": over, "after": recovery(ctx, server.port)})
            print(f"  after the overload: {result['rounds'][-1]['after']}", flush=True)
        result["overloaded_total"] = metric_sum(server, "imgclf_errors_total", code="overloaded")
        result["disconnected_total"] = metric_sum(server, "imgclf_errors_total", code="client_disconnected")
        result["internal_errors"] = metric_sum(server, "imgclf_errors_total", code="internal_error")
    result["loads"].append(load_average())
    return result


def recovery(ctx: Context, port: int) -> dict[str, Any]:
    """The first request once the overload's clients are gone."""
    started = time.perf_counter()
    first = one_request(port, ctx.predict(), timeout=RECOVERY_LIMIT_SECONDS)
    return {"first_ms": first.seconds * 1000, "first_status": first.status, "at_s": started}


def figures(result: dict[str, Any]) -> dict[str, float]:
    """The medians over the rounds: the peak's and the overload's goodput, their ratio, the first request after."""
    rounds = result["rounds"]
    peak = statistics.median(r["peak"]["goodput"] for r in rounds)
    over = statistics.median(r["overload"]["goodput"] for r in rounds)
    return {
        "peak_clients": rounds[0]["peak"]["clients"],
        "peak": peak,
        "overload": over,
        "ratio": over / peak if peak else float("nan"),
        "first_ms": statistics.median(r["after"]["first_ms"] for r in rounds),
        "normal_ms": statistics.median(r["peak"]["ok_mean_ms"] for r in rounds),
        "normal_max_ms": statistics.median(r["peak"]["ok_max_ms"] for r in rounds),
    }


def _row(label: str, p: dict[str, Any]) -> str:
    return (
        f"| {label} | {p['clients']} | {p['answers_per_s']:.1f} | {p['goodput']:.1f} | {p['ok']} | {p['refused']} | "
        f"{p['errors'] + p['other']} | {p['ok_mean_ms']:.0f} | {p['ok_max_ms']:.0f} | {p['refused_mean_ms']:.0f} |"
    )


def render(result: dict[str, Any]) -> list[str]:
    f = figures(result)
    clients = result["rounds"][0]["overload"]["clients"]
    lines = [
        "### Overload and recovery",
        "",
        f"Goodput = 200 answers within **{result['deadline']:g} s** per second; the clients resend at once and ignore"
        f" Retry-After. Load: {result['generator']}. The peak's concurrency is chosen first, then rounds alternate it "
        f"with {clients} clients; after each overload round the very next request is timed. Load average "
        f"{result['loads'][0]:.1f} -> {result['loads'][1]:.1f}.",
        "",
        "| point | clients | answers/s | goodput/s | 200 | 503 | errors | mean 200 ms | max 200 ms | mean 503 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(_row("scan", p) for p in result["scan"].values()),
    ]
    for i, round_ in enumerate(result["rounds"], 1):
        lines += [_row(f"round {i}, peak", round_["peak"]), _row(f"round {i}, overload", round_["overload"])]
    firsts = ", ".join(f"{r['after']['first_ms']:.0f}" for r in result["rounds"])
    memory = ", ".join(
        f"{r['overload']['rss_mib'][0]:.0f} -> {r['overload']['rss_mib'][1]:.0f}" for r in result["rounds"]
    )
    lines += [
        "",
        f"- **Goodput at {clients} connections: {f['overload']:.1f}/s = {f['ratio']:.0%} of the peak** "
        f"({f['peak']:.1f}/s at {f['peak_clients']} clients; medians of the rounds; target >= 90%); memory per round "
        f"{memory} MiB.",
        f"- **First request after the overload: {f['first_ms']:.0f} ms** (median; each round: {firsts} ms), against "
        f"{f['normal_ms']:.0f} ms on average (at most {f['normal_max_ms']:.0f} ms) at the peak's load and "
        f"{result['alone_p50_ms']:.0f} ms for a lone request on an idle service.",
        f"- Refused as overloaded: {result['overloaded_total']:.0f}; clients gone before their answer: "
        f"{result['disconnected_total']:.0f}; internal errors: {result['internal_errors']:.0f}.",
        "",
    ]
    return lines

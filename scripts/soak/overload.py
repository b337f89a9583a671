"""Overload: the peak throughput, then far more clients than the service can serve, then one lone request, then
the peak again (the reference is the mean of the two, so that a drift in the background load between them does not
pass for an effect of the overload).

Goodput counts the answers a client still wanted: 200s that came within ``deadline`` seconds. The clients send
again the moment an answer is in and ignore Retry-After (as wrk does): the worst case for a server that refuses.
"""

from __future__ import annotations

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
        "peaks": {},
    }

    def point(clients: int, seconds: float) -> dict[str, Any]:
        found = goodput.measure(server.port, request, clients, seconds, sizes.deadline, ctx.work).summary()
        print(f"  {clients} clients: {found}", flush=True)
        return found

    with ctx.service("overload") as server:
        alone = closed_loop(server.port, request, 1, seconds=sizes.point_seconds / 2)
        result["alone_p50_ms"] = alone.percentile_ms(50)
        for clients in sizes.peak_clients:
            goodput.measure(server.port, request, clients, WARM_UP_SECONDS, sizes.deadline, ctx.work)
            result["peaks"][clients] = point(clients, sizes.point_seconds)
        rss_before = rss_mib(server.process.pid)
        result["overload"] = point(sizes.overload_clients, sizes.overload_seconds)
        result["overload"]["clients"] = sizes.overload_clients
        result["overload"]["rss_mib"] = [rss_before, rss_mib(server.process.pid)]
        result["after"] = recovery(ctx, server.port, result["alone_p50_ms"])
        best = max(result["peaks"], key=lambda c: result["peaks"][c]["goodput"])
        result["peak_again"] = {"clients": best, **point(best, sizes.point_seconds)}
        result["overloaded_total"] = metric_sum(server, "imgclf_errors_total", code="overloaded")
        result["disconnected_total"] = metric_sum(server, "imgclf_errors_total", code="client_disconnected")
        result["internal_errors"] = metric_sum(server, "imgclf_errors_total", code="internal_error")
    result["loads"].append(load_average())
    print(f"  after the overload: {result['after']}", flush=True)
    return result


def recovery(ctx: Context, port: int, alone_p50_ms: float) -> dict[str, Any]:
    """The first request once the overload's clients are gone, and how long until one is as fast as before."""
    started = time.perf_counter()
    first = one_request(port, ctx.predict())
    normal = max(2 * alone_p50_ms, alone_p50_ms + 50) / 1000
    latest = first
    while latest.seconds > normal and time.perf_counter() - started < RECOVERY_LIMIT_SECONDS:
        latest = one_request(port, ctx.predict())
    return {
        "first_ms": first.seconds * 1000,
        "first_status": first.status,
        "normal_after_s": time.perf_counter() - started - latest.seconds,
    }


def reference(result: dict[str, Any]) -> tuple[int, float]:
    """The peak's concurrency and goodput: the mean of the best point before the overload and the same after."""
    clients, before = max(result["peaks"].items(), key=lambda item: item[1]["goodput"])
    again = result.get("peak_again")
    return int(clients), (before["goodput"] + again["goodput"]) / 2 if again else before["goodput"]


def normal_ms(result: dict[str, Any]) -> float:
    """What "normal time" is here: the mean answer at the lowest concurrency measured (normal load)."""
    lowest = min(result["peaks"], key=int)
    return float(result["peaks"][lowest]["ok_mean_ms"])


def render(result: dict[str, Any]) -> list[str]:
    peak_clients, peak_goodput = reference(result)
    over = result["overload"]
    ratio = over["goodput"] / peak_goodput if peak_goodput else float("nan")
    after = result["after"]
    lines = [
        "### Overload and recovery",
        "",
        f"Goodput = 200 answers within **{result['deadline']:g} s** per second; the clients resend at once and ignore"
        f" Retry-After. Load: {result['generator']}. Load average {result['loads'][0]:.1f} -> "
        f"{result['loads'][1]:.1f}.",
        "",
        "| clients | answers/s | goodput/s | 200 | 503 | errors | mean 200 ms | max 200 ms | mean 503 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [*result["peaks"].items(), (over["clients"], over)]
    if again := result.get("peak_again"):
        rows.append((f"{again['clients']} again", again))
    for clients, p in rows:
        lines.append(
            f"| {clients} | {p['answers_per_s']:.1f} | {p['goodput']:.1f} | {p['ok']} | {p['refused']} | "
            f"{p['errors'] + p['other']} | {p['ok_mean_ms']:.0f} | {p['ok_max_ms']:.0f} | {p['refused_mean_ms']:.0f} |"
        )
    lines += [
        "",
        f"- **Goodput at {over['clients']} connections: {over['goodput']:.1f}/s = {ratio:.0%} of the peak** "
        f"({peak_goodput:.1f}/s at {peak_clients} clients, before and after; target >= 90%); memory "
        f"{over['rss_mib'][0]:.0f} -> {over['rss_mib'][1]:.0f} MiB.",
        f"- **First request after the overload: {after['first_ms']:.0f} ms** (status {after['first_status']}; under "
        f"normal load, {min(result['peaks'], key=int)} clients: {normal_ms(result):.0f} ms on average; a lone request "
        f"before it: p50 {result['alone_p50_ms']:.0f} ms, and within twice that again "
        f"{after['normal_after_s']:.2f} s after the clients left).",
        f"- Refused as overloaded: {result['overloaded_total']:.0f}; clients gone before their answer: "
        f"{result['disconnected_total']:.0f}; internal errors: {result['internal_errors']:.0f}.",
        "",
    ]
    return lines

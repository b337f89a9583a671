"""What the head limits cost: the service with uvicorn's stock httptools protocol against ours, alternately.

Same app, same settings; only the protocol class differs. Both services run side by side; wrk at 16 clients on
``GET /health/live`` (where the protocol's share of the work is largest) and on ``POST /v1/predict`` alternates
between them in short rounds, so that the background load hits both alike; the ratio of the medians is the figure.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
from pathlib import Path
from typing import Any

from scripts.bench import ROOT
from scripts.bench.load import Request, load_generator
from scripts.bench.machine import load_average
from scripts.soak.context import Context

STOCK = (
    "import uvicorn; from app.config import Settings; from app.main import create_app; s = Settings(); "
    "uvicorn.run(create_app(s), host=s.host, port=s.port, log_level=s.log_level, access_log=s.access_log, "
    "http='httptools')"
)
CLIENTS = 16
ROUND_SECONDS = 2.0


def variants(baseline: Path | None) -> list[tuple[str, list[str], Path | None]]:
    found: list[tuple[str, list[str], Path | None]] = [
        ("stock httptools protocol", [sys.executable, "-c", STOCK], None),
        ("limited protocol (ours)", [sys.executable, "-m", "app"], None),
    ]
    if baseline is not None:
        found.append((f"baseline tree {baseline.name}", [sys.executable, "-m", "app"], baseline))
    return found


def measure(ctx: Context) -> dict[str, Any]:
    """Every variant runs at once (idle while another is measured); short rounds alternate between them."""
    ctx.fresh_models()
    generate = load_generator("auto", ctx.work)
    requests = {"/health/live": Request("/health/live", method="GET"), "/v1/predict": ctx.predict()}
    seconds = ROUND_SECONDS
    rates: dict[str, dict[str, list[float]]] = {}
    loads = [load_average()]
    with contextlib.ExitStack() as stack:
        servers = {
            name: stack.enter_context(ctx.serve_command(command, f"protocol-{i}", cwd=cwd or ROOT))
            for i, (name, command, cwd) in enumerate(variants(ctx.baseline))
        }
        for path, request in requests.items():
            for server in servers.values():
                generate(server.port, request, CLIENTS, 1.0)  # warm-up
            for _ in range(ctx.sizes.protocol_rounds):
                for name, server in servers.items():
                    load = generate(server.port, request, CLIENTS, seconds)
                    rates.setdefault(path, {}).setdefault(name, []).append(load.rate)
            print(f"  {path}: {rates[path]}", flush=True)
    loads.append(load_average())
    return {"rates": rates, "client": generate.description, "seconds": seconds, "loads": loads}


def render(result: dict[str, Any]) -> list[str]:
    rates: dict[str, dict[str, list[float]]] = result["rates"]
    lines = [
        "### Cost of the head limits",
        "",
        f"The service with uvicorn's stock httptools protocol and with ours (caps, head time-out), side by side, "
        f"{result['client']}, {CLIENTS} clients, rounds of {result['seconds']:g} s alternating; load average "
        f"{', '.join(f'{x:.1f}' for x in result['loads'])}.",
        "",
        "| path | variant | req/s per round | median | vs stock |",
        "|---|---|---|---:|---:|",
    ]
    for path, by_variant in rates.items():
        stock = statistics.median(next(iter(by_variant.values())))
        for name, values in by_variant.items():
            median = statistics.median(values)
            lines.append(
                f"| `{path}` | {name} | {', '.join(f'{v:.0f}' for v in values)} | {median:.1f} | {median / stock:.0%} |"
            )
    return [*lines, ""]

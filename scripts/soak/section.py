"""The "## Reliability" section of BENCHMARKS.md, from one run's results: each part's own text, then the targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scripts.soak import drain, fuzz, kill, load, overload, protocol, reload, slow_clients

HEADING = "## Reliability"

RENDERERS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "protocol": protocol.render,
    "load": load.render,
    "overload": overload.render,
    "slow": slow_clients.render,
    "drain": drain.render,
    "reload": reload.render,
    "kill": kill.render,
    "fuzz": fuzz.render,
}


def render(results: dict[str, Any]) -> str:
    parts: dict[str, dict[str, Any]] = results["parts"]
    versions = ", ".join(f"{k} {v}" for k, v in results["software"].items())
    lines = [
        HEADING,
        "",
        f"Measured by `make soak` (`python -m scripts.soak`{' --quick' if results.get('quick') else ''}; "
        f"`--only PART` reruns one) on {results['date']}: the real service (`python -m app`, default settings "
        "unless a part says otherwise) on a scratch copy of the default model's folder, one part at a time. "
        f"Machine: {results['machine']}, shared with other work (load average given per part); {versions}.",
        "",
        f"- Before: `{results.get('uptime_before', '')}`; after: `{results.get('uptime_after', '')}`.",
        "",
    ]
    for name, renderer in RENDERERS.items():
        if name in parts:
            lines += renderer(parts[name])
    lines += targets(parts)
    return "\n".join(lines).rstrip() + "\n"


def targets(parts: dict[str, dict[str, Any]]) -> list[str]:
    """The issue's "done when" figures, each with whether it was met."""
    lines = ["### Targets", ""]
    if over := parts.get("overload"):
        f = overload.figures(over)
        clients = over["rounds"][0]["overload"]["clients"]
        lines.append(f"- Goodput at {clients} connections >= 90% of the peak: {f['ratio']:.0%}, "
                     f"{_met(f['ratio'] >= 0.9)}.")  # fmt: skip
        # Normal time: what answers take under normal (the peak's) load, the slowest of them included.
        in_time = f["first_ms"] <= f["normal_max_ms"]
        lines.append(f"- A request right after the overload in normal time: {f['first_ms']:.0f} ms against "
                     f"{f['normal_ms']:.0f} ms on average and at most {f['normal_max_ms']:.0f} ms at the peak's "
                     f"load, {_met(in_time)}.")  # fmt: skip
    if slow := parts.get("slow"):
        for key, what in (("heads", "trickling heads"), ("bodies", "stalled bodies")):
            crowd = slow[key]
            lines.append(f"- {crowd['count']} {what} closed at the time-out: {crowd['closed']} of {crowd['count']}, "
                         f"holding {crowd['rss_held_mib'] - crowd['rss_before_mib']:+.1f} MiB, "
                         f"{_met(crowd['closed'] == crowd['count'])}.")  # fmt: skip
    if over := parts.get("overload"):
        lines.append(f"- Internal errors (disconnects included) under overload: {over['internal_errors']:.0f}, "
                     f"{_met(over['internal_errors'] == 0)}.")  # fmt: skip
    if killed := parts.get("kill"):
        lines.append(f"- Leftovers after the kills and the next write: {killed['litter_after_next_write']}, half "
                     f"versions visible: {len(killed['broken_versions'])}, "
                     f"{_met(killed['litter_after_next_write'] == 0 and not killed['broken_versions'])}.")  # fmt: skip
    if fuzzed := parts.get("fuzz"):
        lines.append(f"- Schema-driven fuzzing: {fuzzed['server_5xx']:.0f} server errors, "
                     f"{_met(fuzzed['server_5xx'] == 0 and fuzzed['with_failures'] == 0)}.")  # fmt: skip
    if loaded := parts.get("load"):
        rss = loaded["rss_mib"]
        lines.append(f"- Sustained load: {loaded['errors']} errors, memory {rss[-1] / rss[1] - 1:+.1%} after the first "
                     f"quarter, {_met(loaded['errors'] == 0)}.")  # fmt: skip
    return [*lines, ""]


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"

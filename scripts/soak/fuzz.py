"""A bounded schemathesis run against the live service: schema-driven requests, none may get a 5xx."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from scripts.bench.machine import load_average
from scripts.soak.context import Context

API_KEY = "soak-fuzz-key"  # admin endpoints on, so that they are fuzzed too
_STATUS = re.compile(r'^imgclf_requests_total\{.*status="(\d+)"\} ([0-9.e+]+)$')


def schemathesis() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    if found is None:
        raise SystemExit("schemathesis is not installed: pip install -e '.[dev]'")
    return found


def measure(ctx: Context) -> dict[str, Any]:
    ctx.fresh_models()
    sizes = ctx.sizes
    report = ctx.work / "schemathesis.json"
    load_before = load_average()
    with ctx.service("fuzz", IMGCLF_API_KEY=API_KEY) as server:
        command = [
            schemathesis(), "run", f"http://127.0.0.1:{server.port}/openapi.json",
            "--checks", "not_a_server_error", "--max-examples", str(sizes.fuzz_examples),
            "--max-time", str(int(sizes.fuzz_seconds)), "--seed", "1", "--header", f"X-API-Key: {API_KEY}",
            "--report", "json", "--report-json-path", str(report), "--no-color",
        ]  # fmt: skip
        done = subprocess.run(command, cwd=ctx.work, capture_output=True, text=True, check=False)  # its cache there
        (ctx.work / "schemathesis.log").write_text(done.stdout + done.stderr)
        statuses: dict[str, float] = {}
        for line in server.get("/metrics")[1].decode().splitlines():
            if match := _STATUS.match(line):
                statuses[match.group(1)] = statuses.get(match.group(1), 0.0) + float(match.group(2))
    raw = json.loads(report.read_text()) if report.exists() else {}
    cases = raw.get("test_cases", {})
    result = {
        "version": raw.get("schemathesis_version", "?"),
        "exit_code": done.returncode,
        "generated": cases.get("generated", 0),
        "with_failures": cases.get("with_failures", 0),
        "errored": cases.get("errored", 0),
        "operations": raw.get("operations", {}).get("tested", 0),
        "running_s": raw.get("running_time", 0.0),
        "server_statuses": dict(sorted(statuses.items())),
        "server_5xx": sum(v for k, v in statuses.items() if k.startswith("5") and k != "503"),
        "loads": [load_before, load_average()],
    }
    print(f"  {result}", flush=True)
    return result


def render(result: dict[str, Any]) -> list[str]:
    statuses = ", ".join(f"{k}: {v:.0f}" for k, v in result["server_statuses"].items())
    return [
        "### Schema-driven fuzzing",
        "",
        f"- **schemathesis {result['version']}: {result['generated']} generated test cases over "
        f"{result['operations']} operations in {result['running_s']:.0f} s, {result['with_failures']} with "
        f"failures, {result['server_5xx']:.0f} server errors (5xx other than 503)** (check `not_a_server_error`; exit "
        f"code {result['exit_code']}). Statuses the service counted: {statuses}. Load average "
        f"{result['loads'][0]:.1f} -> {result['loads'][1]:.1f}.",
        "",
    ]

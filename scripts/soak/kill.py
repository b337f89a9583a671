"""kill -9 in the middle of bundle writes: no half version is ever visible, and the litter the killed writers
leave (their hidden temporary folders) is gone after the next write."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from typing import Any

from modelspec import BundleError, list_models, read_bundle
from scripts.bench import ROOT
from scripts.soak.bundles import copy_as_new_version, litter, size_mib
from scripts.soak.context import Context

# A writer in its own process, slowed down (0.05 s per MiB: about 2 s for the default bundle) so that the kill lands
# in the middle of it; it says when it starts writing.
WRITER = (
    "import sys; from pathlib import Path; from scripts.soak.bundles import copy_as_new_version; "
    "print('writing', flush=True); copy_as_new_version(Path(sys.argv[1]), sys.argv[2], chunk_delay=0.05)"
)
WRITE_SECONDS = 1.8


def measure(ctx: Context) -> dict[str, Any]:
    ctx.fresh_models()
    rng = random.Random(11)
    completed = 0
    for _ in range(ctx.sizes.kills):
        process = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(ctx.models_dir), ctx.model], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        with process.stdout:
            process.stdout.readline()
            time.sleep(rng.uniform(0.0, WRITE_SECONDS))
            process.send_signal(signal.SIGKILL)
            completed += process.wait() == 0
    left = litter(ctx.models_dir)
    broken = []
    for version in list_models(ctx.models_dir)[ctx.model]:
        try:
            read_bundle(ctx.models_dir / ctx.model / str(version))
        except BundleError as error:
            broken.append(f"{version}: {error}")
    copy_as_new_version(ctx.models_dir, ctx.model)
    result = {
        "kills": ctx.sizes.kills,
        "completed_before_kill": completed,
        "litter_after_kills": len(left),
        "litter_mib": size_mib(left),
        "broken_versions": broken,
        "litter_after_next_write": len(litter(ctx.models_dir)),
    }
    print(f"  {result}", flush=True)
    return result


def render(result: dict[str, Any]) -> list[str]:
    return [
        "### kill -9 during bundle writes",
        "",
        f"- **{result['kills']} writers killed mid-write ({result['completed_before_kill']} finished first): "
        f"{len(result['broken_versions'])} half versions visible; {result['litter_after_kills']} temporary folder(s) "
        f"({result['litter_mib']:.1f} MiB) left, {result['litter_after_next_write']} after the next write.** Each "
        "writer removes what dead writers left before it starts (so kills in a row leave at most one folder); the "
        "service does the same at start.",
        "",
    ]

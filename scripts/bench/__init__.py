"""The benchmarks: each command measures one thing on this machine and writes its own section of BENCHMARKS.md.

    python -m scripts.bench.serving    # make bench: the "## Serving" section
    python -m scripts.bench.training   # make bench-training: the "## Training" section
    python -m scripts.bench.explain    # make bench-explain (and make bench): the "## Explanations" section
    python -m scripts.bench.trust      # make bench-trust: the "## Trust" section

Shared by them, one job per module: ``machine`` (what the numbers were measured on), ``report`` (replace one
section of BENCHMARKS.md, atomically), ``images`` (the test photos), ``load`` (closed-loop HTTP load: wrk or a
Python client, for any request).

To add a load scenario, give ``serving.scenarios`` a request builder and the client counts to run it at. To add a
section or a part of one, write a module with a ``measure`` and a ``render`` function (see ``training.throughput``)
and call it from the command that owns the section. Numbers from a shared machine drift: compare within one run.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

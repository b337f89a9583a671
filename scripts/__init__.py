"""Developer scripts: benchmarks (``scripts.bench``) and one-off checks; run them from the repository root."""

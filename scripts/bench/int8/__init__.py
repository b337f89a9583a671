"""Model-only speed of a bundle's fp32 and int8 graphs, side by side in one run (``python -m scripts.bench.int8``)."""

"""``python -m scripts.bench.explain``: what an explanation (occlusion, default grid) costs, and what one running
does to ``/v1/predict`` latency, measured on the real service in one run; writes the "## Explanations" section of
BENCHMARKS.md.

Without and with an explanation running are measured in alternating rounds, so that both see the same background
load; the ratio of the two medians is the number to read.
"""

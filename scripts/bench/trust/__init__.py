"""``python -m scripts.bench.trust`` (``make bench-trust``): the measurements that chose the trust methods
(temperature scaling, the conformal score, the OOD score) on Fashion-MNIST, digits and the sample photos, and what
the kept OOD score costs per image; writes the "## Trust" section of BENCHMARKS.md.

``data`` makes the folders, trains the model through the public CLI and embeds every image with the bundle's ONNX
model; ``measure`` computes the numbers; ``section`` renders them.
"""

"""Training benchmarks on this machine; ``python -m scripts.bench.training`` writes the "## Training" section of
BENCHMARKS.md (not a test). Each part is a module with ``measure(settings)`` and ``render(settings, result)``:

(a) ``fashion_mnist``: EfficientNet-Lite0 fine-tuned on Fashion-MNIST's training set, scored on its 10,000 test
    images (ONNX Runtime), with the wall time of the whole ``fit`` command.
(b) ``pretrained``: "When should I use a pretrained network?": LeNet-5 and Lite0 from scratch, Lite0 as a frozen
    feature extractor, fine-tuned, and two-phase, with the same epochs on the same 100 images per class.
(c) ``throughput``: our training loop (PNG decoding, augmentation, metrics, scheduler) against a bare PyTorch loop
    on one batch held in memory: same model, batch, image size, threads; measured in the same run, interleaved.

Run from the repository root: ``python -m scripts.bench.training`` (``--smoke`` for a few-minute dry run that
writes nothing to BENCHMARKS.md). The full run takes about 40 minutes on 2 cores. Fashion-MNIST is prepared first if
needed (``make prepare-fashion-mnist``).
"""

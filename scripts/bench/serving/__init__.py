"""Serving benchmark: the in-process limit and the real service over HTTP, measured in one run on one machine.

What it measures (``make bench`` runs ``python -m scripts.bench.serving`` and writes the "## Serving" section of
BENCHMARKS.md):

* the in-process limit (``inprocess``): decode threads turning the test JPEG into tensors while the model runs
  batches, no HTTP, at several batch sizes, with the service's backend and (ONNX Runtime) other session options and
  thread arrangements too; the best of them all is "the limit";
* the in-process single-image time: decode + preprocess + forward of one image, nothing else running;
* a real ``python -m app`` subprocess (``service``) under a closed-loop load of 1, 4, 16 and 64 clients posting the
  JPEG as a raw ``image/jpeg`` body (``scenarios``; ``scripts.bench.load``: wrk with a Lua script when installed,
  else a small asyncio client), with batching on and with batching off (``points``): throughput, p50/p90/p99
  latency, non-2xx responses and socket errors, the batcher's own Prometheus numbers (mean batch size, queue wait)
  and the server's CPU use;
* start-up to ready (process start to ``/health/ready`` 200) and the first request against the next ones;
* a 4000x3000 JPEG decoded with and without Pillow's ``draft`` (JPEG DCT scaling).

``section`` turns the numbers into the Markdown. Speeds on a shared machine drift, so compare numbers from the same
run; the load average is recorded with each.
"""

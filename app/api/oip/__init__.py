"""The Open Inference Protocol (KServe v2) over REST, next to ``/v1``: what a model looks like as v2 tensors
(``signature``), the request and response documents (``schemas``), reading a request body, JSON or with the binary
tensor data extension (``decode``), and writing the answer (``encode``).

Everything after reading the request is the service's own pipeline (``app.engine.inference``): the same registry,
decode pool, batcher and limits as ``/v1``, so a v2 request and a v1 request that arrive together share a batch.
The routes are ``app.api.routes.v2``; errors are made in the protocol's ``{"error": "..."}`` shape by
``app.api.errors`` (``app.api.protocols``).
"""

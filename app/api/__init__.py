"""The HTTP face of the engine: routes (v1 and the Open Inference Protocol v2), errors in each protocol's shape,
uploads, response schemas and encoding, the middlewares (body limit, shedding, metrics), the web page and the
uvicorn protocol with its head limits."""

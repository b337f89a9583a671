"""The serving engine: models and their registry, admission, batching, the inference pipeline, backends and the
numeric post-processing. It knows nothing of HTTP (no FastAPI, no Starlette): ``app.api`` (HTTP) and
``app.batch`` (a command over files) are faces over it."""

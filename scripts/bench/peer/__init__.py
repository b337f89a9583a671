"""Same-runtime peers: what a user who already has our ``model.onnx`` would write instead of running our service.

``kserve_server``: a minimal KServe ``ModelServer`` custom model on ONNX Runtime (no batching), serving a bundle's
``model.onnx`` with the bundle's own preprocessing (``modelspec.decode.load_input``, the same code the service
runs), so a comparison measures the serving layers, not the models or the image code.
"""

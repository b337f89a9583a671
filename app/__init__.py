"""imgclf's HTTP service: loads model bundles and serves predictions, embeddings and metadata."""

__version__ = "0.1.0"

# imgclf images. Two targets:
#   serving (the default, last stage): the HTTP service on ONNX Runtime with the default ImageNet bundle, no PyTorch
#       docker build -t imgclf .
#   train: the training package with PyTorch; its entrypoint is `python -m training`
#       docker build --target train -t imgclf-train .
# Build arguments:
#   BASE_IMAGE       a Debian-based Python 3.11+ image (default: the official python:3.11-slim-bookworm)
#   TORCH_VARIANT    PyTorch wheel flavour from the PyTorch index: cpu (default), or a CUDA one such as cu126, cu128
#   TORCH_INDEX_URL  the index PyTorch comes from (default: https://download.pytorch.org/whl/$TORCH_VARIANT)
#   WHEELHOUSE=1     install every Python package from the wheels in .wheelhouse/ only (air-gapped builds)
# A CA bundle for pip can be passed as a BuildKit secret: --secret id=pipcert,src=/path/to/ca-bundle.crt
# RUN --mount needs BuildKit (docker buildx, or DOCKER_BUILDKIT=1 with Docker 18.09-22.x). There is no `# syntax=`
# line on purpose: the builder's own Dockerfile frontend is used and nothing has to be pulled for it.

ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------------------------
# base: Python, the shared environment variables and the unprivileged user every image runs as.
FROM ${BASE_IMAGE} AS base
ENV LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    IMGCLF_MODELS_DIR=/models \
    IMGCLF_EMBEDDED_MODELS=/opt/imgclf/models
# The models folder belongs to the user, so a named volume mounted over it starts writable for the service and
# the trainer alike.
RUN groupadd --system --gid 10001 imgclf \
    && useradd --system --uid 10001 --gid imgclf --create-home --home-dir /home/imgclf \
        --shell /usr/sbin/nologin imgclf \
    && install -d -o imgclf -g imgclf -m 0755 /models

# ---------------------------------------------------------------------------------------------------------------
# builder: a virtual environment and the pip wrapper (CA secret, wheelhouse). Every stage that runs pip declares
# ARG WHEELHOUSE, so the wrapper sees it while it runs and no image keeps it.
FROM base AS builder
COPY docker/pip-install.sh /usr/local/bin/imgclf-pip-install
RUN python3 -m venv /opt/venv
# The project's metadata with empty packages (/stub): installing it brings in the dependencies as a layer of their
# own, which stays cached while the code changes; the code itself is installed from /src without dependencies.
COPY pyproject.toml README.md /src/
RUN mkdir /stub \
    && cp /src/pyproject.toml /src/README.md /stub/ \
    && for package in modelspec app training; do mkdir "/stub/$package" && touch "/stub/$package/__init__.py"; done

# ---------------------------------------------------------------------------------------------------------------
# serving-deps: the serving dependencies only (ONNX Runtime, FastAPI, ...), no PyTorch.
FROM builder AS serving-deps
ARG WHEELHOUSE=0
RUN --mount=type=secret,id=pipcert,required=false \
    --mount=type=bind,source=.wheelhouse,target=/wheelhouse \
    imgclf-pip-install /stub \
    && pip uninstall --yes imgclf \
    && rm -rf /stub
COPY modelspec /src/modelspec
COPY app /src/app
RUN --mount=type=secret,id=pipcert,required=false \
    --mount=type=bind,source=.wheelhouse,target=/wheelhouse \
    imgclf-pip-install --no-deps /src \
    && rm -rf /src

# ---------------------------------------------------------------------------------------------------------------
# torch-deps: PyTorch and the training dependencies.
FROM builder AS torch-deps
ARG WHEELHOUSE=0
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}
RUN --mount=type=secret,id=pipcert,required=false \
    --mount=type=bind,source=.wheelhouse,target=/wheelhouse \
    imgclf-pip-install --extra-index-url "${TORCH_INDEX_URL}" "/stub[train]" \
    && pip uninstall --yes imgclf \
    && rm -rf /stub

# ---------------------------------------------------------------------------------------------------------------
# default-model: export the embedded default, EfficientNet-Lite0 with its ImageNet weights, as a bundle.
FROM torch-deps AS default-model
ARG WHEELHOUSE=0
COPY modelspec /src/modelspec
COPY training /src/training
RUN --mount=type=secret,id=pipcert,required=false \
    --mount=type=bind,source=.wheelhouse,target=/wheelhouse \
    imgclf-pip-install --no-deps /src
RUN python -m training export-pretrained efficientnet_lite0 \
        --models-dir /opt/imgclf/models --name efficientnet-lite0

# ---------------------------------------------------------------------------------------------------------------
# train: works in /workspace, laid out like the repository (models/ and data/ are meant to be mounted):
#   docker run --rm -v imgclf_models:/workspace/models -v "$PWD/data:/workspace/data:ro" imgclf-train \
#       fit --data data/<ImageFolder> --name <model> ...
# Built on torch-deps rather than copied out of it, so a code change adds a layer of kilobytes, not a second copy of
# PyTorch.
FROM torch-deps AS train
ARG WHEELHOUSE=0
COPY modelspec /src/modelspec
COPY training /src/training
COPY app /src/app
RUN --mount=type=secret,id=pipcert,required=false \
    --mount=type=bind,source=.wheelhouse,target=/wheelhouse \
    imgclf-pip-install --no-deps /src \
    && rm -rf /src \
    && install -d -o imgclf -g imgclf -m 0755 /workspace /workspace/models /workspace/data
# Pretrained weights come from packages or local files, never from a hub at run time: fail fast, not after retries.
ENV HF_HUB_OFFLINE=1 \
    IMGCLF_MODELS_DIR=/workspace/models
USER 10001:10001
WORKDIR /workspace
ENTRYPOINT ["python", "-m", "training"]
CMD ["--help"]

# ---------------------------------------------------------------------------------------------------------------
# serving: the default target.
FROM base AS serving
COPY --from=serving-deps /opt/venv /opt/venv
COPY --from=default-model /opt/imgclf/models /opt/imgclf/models
COPY docker/entrypoint.sh /usr/local/bin/imgclf-entrypoint
ENV IMGCLF_HOST=0.0.0.0 \
    IMGCLF_PORT=8000 \
    IMGCLF_DEFAULT_MODEL=efficientnet-lite0 \
    IMGCLF_BACKEND=onnx \
    IMGCLF_WATCH_INTERVAL=5
USER 10001:10001
WORKDIR /home/imgclf
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('IMGCLF_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["imgclf-entrypoint"]
CMD ["python", "-m", "app"]

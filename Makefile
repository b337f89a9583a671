# The two commands that matter: `make run` (set up, build the default model if missing, serve it) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The service's own variables (IMGCLF_*) in the environment win over these defaults; `make run PORT=9000` wins
# over both. Other IMGCLF_* variables pass through to the service untouched.
HOST ?= $(or $(IMGCLF_HOST),127.0.0.1)
PORT ?= $(or $(IMGCLF_PORT),8000)
MODELS_DIR ?= $(or $(IMGCLF_MODELS_DIR),models)
DEFAULT_MODEL ?= $(if $(filter environment%,$(origin IMGCLF_DEFAULT_MODEL)),$(IMGCLF_DEFAULT_MODEL),efficientnet-lite0)
STAMP := $(VENV)/.installed

.PHONY: install run test lint format default-model bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

BUILT_MODEL = $(or $(DEFAULT_MODEL),efficientnet-lite0)

default-model: $(STAMP)
	@if [ -z "$$(ls -d $(MODELS_DIR)/$(BUILT_MODEL)/[0-9]* 2>/dev/null)" ]; then \
		$(PY) -m training export-pretrained efficientnet_lite0 --models-dir $(MODELS_DIR) --name $(BUILT_MODEL); \
	fi

run: default-model
	IMGCLF_MODELS_DIR=$(MODELS_DIR) IMGCLF_DEFAULT_MODEL=$(DEFAULT_MODEL) $(PY) -m app --host $(HOST) --port $(PORT)

test: $(STAMP) chromium promtool
	$(PY) -m pytest

# The browser tests (tests/browser) drive Debian's Chromium with Playwright; never a browser download.
CHROMIUM ?= /usr/bin/chromium
.PHONY: chromium
chromium:
	@[ -x $(CHROMIUM) ] || { \
		sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "installing Debian's chromium for the browser tests (apt-get)"; \
		{ $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
		  { $$sudo apt-get update -qq >/dev/null 2>&1 && \
		    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; }; } || \
		echo "could not install chromium: the browser tests will be skipped (with CI=true they fail)"; }

# The alert rules (deploy/prometheus) are checked and unit-tested with promtool, from Debian's prometheus package.
.PHONY: promtool
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
		sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "installing Debian's prometheus package for promtool (apt-get)"; \
		{ $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || \
		  { $$sudo apt-get update -qq >/dev/null 2>&1 && \
		    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1; }; } || \
		echo "could not install promtool: the alert rule tests will be skipped (with CI=true they fail)"; }

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy modelspec app training scripts/bench scripts/soak

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build *.egg-info

# --- training (docs/training.md) -------------------------------------------------------------------------------
# Fashion-MNIST comes from Debian's dataset-fashion-mnist package (IDX files under /usr/share/datasets/fashion-mnist).
FASHION_MNIST_DIR ?= data/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: prepare-fashion-mnist bench-training

prepare-fashion-mnist: $(STAMP)
	@if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then \
		echo "Fashion-MNIST is not installed: installing Debian's dataset-fashion-mnist package (30 MB) with apt-get"; \
		$(SUDO) apt-get install -y --no-install-recommends dataset-fashion-mnist; \
	fi
	$(PY) -m training prepare fashion-mnist --out $(FASHION_MNIST_DIR)

bench-training: prepare-fashion-mnist
	$(PY) -m scripts.bench.training --data $(FASHION_MNIST_DIR)

# ---- Containers (docs/deployment.md) ----------------------------------------------------------------------------
# `make docker` builds the serving image (default target) and the training image. Pass build arguments with
# DOCKER_BUILD_ARGS, e.g. DOCKER_BUILD_ARGS='--build-arg TORCH_VARIANT=cu128' or '--build-arg WHEELHOUSE=1'.
DOCKER ?= docker
IMAGE ?= imgclf
DOCKER_BUILD_ARGS ?=

.PHONY: docker docker-smoke docker-lint

docker:
	DOCKER_BUILDKIT=1 $(DOCKER) build --target serving --tag $(IMAGE):latest $(DOCKER_BUILD_ARGS) .
	DOCKER_BUILDKIT=1 $(DOCKER) build --target train --tag $(IMAGE)-train:latest $(DOCKER_BUILD_ARGS) .

# Builds both images, runs the compose stack, predicts, retrains, sees the new version served, tears down.
docker-smoke: $(STAMP)
	PYTHON=$(abspath $(PY)) bash scripts/docker-smoke.sh

# Hadolint, shellcheck and the compose checks: what CI runs from tests/deploy, no Docker needed.
docker-lint: $(STAMP)
	$(PY) -m pytest tests/deploy -q

# The serving benchmark: in-process limit vs the real service over HTTP (wrk), written to BENCHMARKS.md ("## Serving").
# wrk is installed with apt-get when missing (root or sudo); without it the script falls back to a Python client.
BENCH_ARGS ?=
bench: default-model
	@command -v wrk >/dev/null 2>&1 || { \
		sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "installing wrk (the load generator) with apt-get"; \
		{ $$sudo apt-get install -y -qq wrk >/dev/null 2>&1 || \
		  { $$sudo apt-get update -qq >/dev/null 2>&1 && $$sudo apt-get install -y -qq wrk >/dev/null 2>&1; }; } || \
		echo "could not install wrk: the benchmark uses its Python client instead"; }
	$(PY) -m scripts.bench.serving --models-dir $(MODELS_DIR) --model $(BUILT_MODEL) $(BENCH_ARGS)
	$(MAKE) --no-print-directory bench-precision
	$(MAKE) --no-print-directory bench-explain

# fp32, int8 and a same-runtime peer (a KServe ModelServer on ONNX Runtime) in alternating rounds, written to
# BENCHMARKS.md ("## Serving: fp32, int8 and a peer"). BENCH_INT8_BUNDLE: a trained bundle with model.int8.onnx; by
# default one is trained once under runs/bench-int8 (about 7 minutes on 2 cores): EfficientNet-Lite0 as a feature
# extractor on 4,000 Fashion-MNIST training images (1,000 more held out for validation), scored and quantised
# against the 10,000 test images by `python -m training fit` itself.
BENCH_INT8_DIR ?= runs/bench-int8
BENCH_INT8_BUNDLE ?= $(BENCH_INT8_DIR)/models/fashion-mnist/1
BENCH_INT8_NOTE ?= trained: EfficientNet-Lite0 fitted as a feature extractor on 4,000 Fashion-MNIST training images (224 px, 10 epochs) by \`python -m training fit\`, which quantised it at export
BENCH_PRECISION_ARGS ?=
.PHONY: bench-precision bench-int8-bundle
bench-int8-bundle: prepare-fashion-mnist
	@[ -f $(BENCH_INT8_DIR)/models/fashion-mnist/1/model.int8.onnx ] || { \
		$(PY) -m training prepare fashion-mnist --out $(BENCH_INT8_DIR)/fashion-mnist-500 --limit 500 --force && \
		$(PY) -m training fit --data $(BENCH_INT8_DIR)/fashion-mnist-500/train --test-data $(FASHION_MNIST_DIR)/test \
			--val-fraction 0.2 --epochs 10 --mode feature-extractor --lr 1e-2 --augment none \
			--models-dir $(BENCH_INT8_DIR)/models --name fashion-mnist --run-dir $(BENCH_INT8_DIR)/run --quiet; }

bench-precision: $(STAMP)
	@[ -f $(BENCH_INT8_BUNDLE)/model.int8.onnx ] || [ "$(BENCH_INT8_BUNDLE)" != "$(BENCH_INT8_DIR)/models/fashion-mnist/1" ] \
		|| $(MAKE) --no-print-directory bench-int8-bundle
	$(PY) -m scripts.bench.serving.precision --bundle $(BENCH_INT8_BUNDLE) --bundle-note "$(BENCH_INT8_NOTE)" \
		$(BENCH_PRECISION_ARGS)

# The batch command's benchmark (about 5 minutes on an idle 2-core machine, much longer on a busy one): python -m
# app.batch over 10,000 generated photos against the in-process limit, alternating; writes "## Batch" of BENCHMARKS.md.
BENCH_BATCH_ARGS ?=
.PHONY: bench-batch
bench-batch: default-model
	$(PY) -m scripts.bench.batch --models-dir $(MODELS_DIR) --model $(BUILT_MODEL) $(BENCH_BATCH_ARGS)

# What one explanation costs, and /v1/predict's p50 with and without one running: BENCHMARKS.md ("## Explanations").
.PHONY: bench-explain
bench-explain: default-model
	$(PY) -m scripts.bench.explain --models-dir $(MODELS_DIR) --model $(BUILT_MODEL)

# The reliability suite (about 12 minutes, not part of `make test`): load, overload and goodput, slow clients,
# SIGTERM drain, reload under load, kill -9 during writes, schemathesis; writes BENCHMARKS.md ("## Reliability").
# SOAK_ARGS='--only overload' reruns one part, '--quick' checks the suite in a few minutes.
SOAK_ARGS ?=
.PHONY: soak
soak: default-model
	$(PY) -m scripts.soak --models-dir $(MODELS_DIR) --model $(BUILT_MODEL) $(SOAK_ARGS)

# Calibration, conformal sets and OOD scores measured on Fashion-MNIST (six classes known, four held out), digits
# and the sample photos, and what the kept OOD score costs per image (about 6 minutes on 2 cores): BENCHMARKS.md
# ("## Trust"), then predict p50 at c=1 through the real service with and without trust data (printed; recorded by
# hand in "What the OOD score costs"). Trains a small frozen-feature model through `python -m training fit` under runs/bench-trust (reused).
.PHONY: bench-trust
bench-trust: default-model
	@dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || { \
		echo "installing Debian's dataset-fashion-mnist package (30 MB) with apt-get"; \
		$(SUDO) apt-get install -y --no-install-recommends dataset-fashion-mnist; }
	$(PY) -m scripts.bench.trust
	$(PY) -m scripts.bench.trust.serving_latency --models-dir $(MODELS_DIR)

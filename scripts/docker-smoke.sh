#!/usr/bin/env bash
# End-to-end proof of the container setup (`make docker-smoke`):
#   build the serving and training images, start the compose stack, wait for readiness, classify a photo,
#   retrain through the `train` service and see the new model served, train a second version and see it replace
#   the first, roll back to the first by moving the second aside, tear everything down.
#
# It sets up what it lacks: Docker's engine, a compose implementation and debootstrap (Debian packages, when
# apt-get is there), a daemon when none answers, and -- only when no image registry can be reached -- a local
# Python base image made with debootstrap plus a wheelhouse so that the image builds need no package index.
# On an ordinary machine with Docker it uses the official python image and the package indexes.
#
# Settings (environment): PYTHON (a Python with the project's dev extra; default .venv/bin/python),
# BASE_IMAGE (default python:3.11-slim-bookworm), DOCKER_SMOKE_WHEELHOUSE (auto|1|0), DOCKER_SMOKE_PORT,
# DOCKER_SMOKE_PRUNE=1 (remove dangling images and build cache at the end).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim-bookworm}
LOCAL_BASE_IMAGE=local/python:3.11-bookworm
WHEELHOUSE_MODE=${DOCKER_SMOKE_WHEELHOUSE:-auto}
SERVING_IMAGE=imgclf:latest
TRAIN_IMAGE=imgclf-train:latest
export COMPOSE_PROJECT_NAME=imgclf-smoke
CLIENT=(scripts/docker_smoke_client.py)

# Training run of the smoke test: scikit-learn's digits as an ImageFolder tree (data/digits/{train,test}/<digit>),
# EfficientNet-Lite0 (the default backbone) as a frozen feature extractor, one epoch on small images.
TRAIN_MODEL=smoke-digits
PREPARE_ARGS=(prepare digits --out)
FIT_ARGS=(fit --data data/digits/train --name "$TRAIN_MODEL" --mode feature-extractor --epochs 1 --image-size 64
    --no-hflip --quiet)

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'docker-smoke: error: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
have() { command -v "$1" >/dev/null 2>&1; }

apt_install() {
    have apt-get || die "$* missing and this is not a Debian-like system: install it and rerun"
    [ "$(id -u)" = 0 ] || die "$* missing: run as root (or install it) so that apt-get can add it"
    log "installing $* (apt-get)"
    if [ -z "${APT_UPDATED:-}" ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------------------------------------------------------
# Docker: a client with BuildKit, a daemon, a compose.

# A docker client that builds with BuildKit: one with the buildx plugin, or an older one (< 23) with it built in.
pick_docker_client() {
    local candidate major
    for candidate in docker /usr/bin/docker; do
        have "$candidate" || continue
        if "$candidate" buildx version >/dev/null 2>&1; then
            DOCKER=$candidate
            return 0
        fi
        major=$("$candidate" --version | sed -n 's/^Docker version \([0-9]*\)\..*/\1/p')
        if [ -n "$major" ] && [ "$major" -lt 23 ]; then
            DOCKER=$candidate
            return 0
        fi
    done
    return 1
}

STARTED_DOCKERD_PID=
DOCKERD_LOG=

wait_for_daemon() {
    for _ in $(seq 60); do
        "$DOCKER" info >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}

start_dockerd() {
    local driver
    have dockerd || apt_install docker.io
    DOCKERD_LOG=$(mktemp /tmp/docker-smoke-dockerd.XXXXXX.log)
    # No iptables and no default bridge: what works inside containers and sandboxes without NAT privileges.
    # Builds then use the host network; the compose network is a user-defined bridge reached through docker-proxy.
    for driver in overlay2 vfs; do
        log "starting dockerd (storage driver $driver; log: $DOCKERD_LOG)"
        dockerd --storage-driver="$driver" --iptables=false --bridge=none >>"$DOCKERD_LOG" 2>&1 &
        STARTED_DOCKERD_PID=$!
        for _ in $(seq 60); do
            if "$DOCKER" info >/dev/null 2>&1; then
                return 0
            fi
            kill -0 "$STARTED_DOCKERD_PID" 2>/dev/null || break
            sleep 0.5
        done
        kill "$STARTED_DOCKERD_PID" 2>/dev/null || true
        wait "$STARTED_DOCKERD_PID" 2>/dev/null || true
        STARTED_DOCKERD_PID=
        echo "dockerd did not start with $driver:" >&2
        tail -n 5 "$DOCKERD_LOG" >&2
    done
    die "could not start dockerd (see $DOCKERD_LOG)"
}

setup_docker() {
    if ! pick_docker_client; then
        apt_install docker.io
        pick_docker_client || die "no docker client that can build with BuildKit (install docker buildx)"
    fi
    export DOCKER_BUILDKIT=1
    if ! "$DOCKER" info >/dev/null 2>&1; then
        if [ "$(id -u)" != 0 ]; then
            die "no Docker daemon answers to $(id -un): start it, or join the docker group, or run as root"
        fi
        # The system's own service first (an ordinary machine); else a daemon of our own (containers, sandboxes).
        if have systemctl && timeout 60 systemctl start docker >/dev/null 2>&1 && wait_for_daemon; then
            echo "started the docker service" >&2
        else
            start_dockerd
        fi
    fi
    if "$DOCKER" compose version >/dev/null 2>&1; then
        COMPOSE=("$DOCKER" compose)
    else
        have docker-compose || apt_install docker-compose
        COMPOSE=(docker-compose)
    fi
    # A daemon without the default bridge (as started above) cannot give build steps a network of their own.
    BUILD_NETWORK=()
    if ! "$DOCKER" network inspect bridge >/dev/null 2>&1; then
        BUILD_NETWORK=(--network host)
    fi
    echo "docker client: $DOCKER ($("$DOCKER" --version)); compose: ${COMPOSE[*]};" \
        "storage driver: $("$DOCKER" info --format '{{.Driver}}')" >&2
}

# ---------------------------------------------------------------------------------------------------------------
# Base image and Python packages for the build.

OFFLINE=0

setup_base_image() {
    if "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        return 0
    fi
    log "pulling $BASE_IMAGE"
    if timeout 300 "$DOCKER" pull --quiet "$BASE_IMAGE" >/dev/null 2>&1; then
        return 0
    fi
    echo "$BASE_IMAGE cannot be pulled: no image registry reachable; using a local Debian base image" >&2
    OFFLINE=1
    BASE_IMAGE=$LOCAL_BASE_IMAGE
    if "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        return 0
    fi
    have debootstrap || apt_install debootstrap
    [ "$(id -u)" = 0 ] || die "debootstrap needs root to build $BASE_IMAGE"
    local rootfs
    rootfs=$(mktemp -d /tmp/docker-smoke-rootfs.XXXXXX)
    log "building $BASE_IMAGE with debootstrap (Debian bookworm, Python 3.11)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
        bookworm "$rootfs" >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | "$DOCKER" import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$BASE_IMAGE" \
        >/dev/null
    rm -rf "$rootfs"
}

BUILD_ARGS=()

setup_packages() {
    local use_wheelhouse=$WHEELHOUSE_MODE cert
    if [ "$use_wheelhouse" = auto ]; then
        use_wheelhouse=$OFFLINE
    fi
    if [ "$use_wheelhouse" = 1 ]; then
        # No registry reachable: assume the PyTorch index is not either, and install from wheels that this
        # machine's pip can download (whatever index and mirrors it is configured with).
        log "filling .wheelhouse/ with the wheels of imgclf[train] (pip download)"
        "$PYTHON" -m pip download -qq --dest .wheelhouse "setuptools>=68" wheel ".[train]"
        rm -f .wheelhouse/imgclf-*
        BUILD_ARGS+=(--build-arg WHEELHOUSE=1)
    fi
    # pip's CA bundle, when it has its own (corporate proxies), goes to the build as a secret, never into a layer.
    cert=${PIP_CERT:-$("$PYTHON" -m pip config get global.cert 2>/dev/null || true)}
    if [ -n "$cert" ] && [ -f "$cert" ]; then
        BUILD_ARGS+=(--secret "id=pipcert,src=$cert")
    fi
}

# ---------------------------------------------------------------------------------------------------------------
# Teardown, also on failure.

WORK=
STACK_CREATED=
cleanup() {
    local status=$?
    set +e
    if [ "$status" != 0 ] && [ -n "$STACK_CREATED" ]; then
        echo "--- api logs (last 40 lines) ---" >&2
        "${COMPOSE[@]}" logs --no-color --tail=40 api >&2 2>/dev/null
    fi
    if [ -n "${COMPOSE[*]:-}" ]; then
        log "tearing down the compose stack"
        "${COMPOSE[@]}" --profile train down --volumes --remove-orphans >/dev/null 2>&1
    fi
    if [ "${DOCKER_SMOKE_PRUNE:-0}" = 1 ] && [ -n "${DOCKER:-}" ]; then
        "$DOCKER" image prune --force >/dev/null 2>&1
        "$DOCKER" builder prune --force >/dev/null 2>&1
    fi
    if [ -n "$STARTED_DOCKERD_PID" ]; then
        log "stopping the dockerd this script started"
        kill "$STARTED_DOCKERD_PID" 2>/dev/null
        wait "$STARTED_DOCKERD_PID" 2>/dev/null
        [ "$status" = 0 ] && rm -f "$DOCKERD_LOG"
    fi
    [ -n "$WORK" ] && rm -rf "$WORK"
    if [ "$status" = 0 ]; then
        log "docker smoke test passed"
    else
        echo "docker-smoke: FAILED (exit $status)" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------------------------

# Train version $1 of $TRAIN_MODEL in the train service and wait until the api at $2 serves it; print the seconds
# the training took.
train_version() {
    local version=$1 url=$2 start
    start=$(now)
    if ! "${COMPOSE[@]}" run --rm -T train "${FIT_ARGS[@]}" >"$WORK/train-$version.log" 2>&1; then
        cat "$WORK/train-$version.log" >&2
        die "training in the train service failed"
    fi
    elapsed "$start" "$(now)"
    echo >&2
    grep -E 'INFO training[.a-z]*: epoch|wrote bundle' "$WORK/train-$version.log" >&2 || true
    "$PYTHON" "${CLIENT[@]}" wait-model "$url" "$TRAIN_MODEL" --version "$version" --exact --timeout 60 --grace 15 >&2
}

main() {
    [ -x "$PYTHON" ] || die "$PYTHON not found: run 'make install' first, or set PYTHON"
    setup_docker
    setup_base_image
    setup_packages

    local common_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" "${BUILD_ARGS[@]}" "${BUILD_NETWORK[@]}")
    log "building $SERVING_IMAGE and $TRAIN_IMAGE (base image $BASE_IMAGE)"
    local t0 t1 build_seconds
    t0=$(now)
    "$DOCKER" build --quiet --target serving --tag "$SERVING_IMAGE" "${common_args[@]}" . >/dev/null
    "$DOCKER" build --quiet --target train --tag "$TRAIN_IMAGE" "${common_args[@]}" . >/dev/null
    t1=$(now)
    build_seconds=$(elapsed "$t0" "$t1")

    WORK=$(mktemp -d /tmp/docker-smoke.XXXXXX)
    chmod 755 "$WORK"
    mkdir -p "$WORK/data"
    log "preparing the inputs: the digits demo set and scikit-image's chelsea photo"
    "$PYTHON" -m training "${PREPARE_ARGS[@]}" "$WORK/data/digits" >/dev/null
    "$PYTHON" -c 'import sys; from PIL import Image; from skimage import data
Image.fromarray(data.chelsea()).save(sys.argv[1], quality=90)' "$WORK/chelsea.jpg"
    chmod -R a+rX "$WORK"

    local port
    port=${DOCKER_SMOKE_PORT:-$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
    local url="http://127.0.0.1:$port"
    export IMGCLF_PUBLISH="127.0.0.1:$port" IMGCLF_DATA_DIR="$WORK/data" IMGCLF_WATCH_INTERVAL=2 IMGCLF_TAG=latest
    IMGCLF_API_KEY=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(24))')
    export IMGCLF_API_KEY

    log "starting the api service ($url)"
    local output
    STACK_CREATED=1
    if ! output=$("${COMPOSE[@]}" up --no-start --no-build api 2>&1); then
        printf '%s\n' "$output" >&2
        die "compose could not create the api service"
    fi
    "${COMPOSE[@]}" start api >/dev/null 2>&1 || die "compose could not start the api service"
    local ready_at container started_at ready_seconds
    ready_at=$("$PYTHON" "${CLIENT[@]}" wait-ready "$url" --timeout 90)
    container=$("${COMPOSE[@]}" ps -q api)
    started_at=$("$DOCKER" inspect --format '{{.State.StartedAt}}' "$container")
    ready_seconds=$("$PYTHON" "${CLIENT[@]}" seconds-since "$started_at" "$ready_at")
    echo "ready ${ready_seconds} s after the container started" >&2

    log "classifying chelsea.jpg with the embedded default model"
    "$PYTHON" "${CLIENT[@]}" predict "$url" "$WORK/chelsea.jpg" --expect cat

    log "retraining through the train service: ${FIT_ARGS[*]}"
    local train_seconds
    train_seconds=$(train_version 1 "$url")
    "$PYTHON" "${CLIENT[@]}" predict "$url" "$WORK/chelsea.jpg" --model "$TRAIN_MODEL"

    log "training again: version 2"
    train_version 2 "$url" >/dev/null

    log "rolling back: moving version 2 out of the served versions"
    "${COMPOSE[@]}" exec -T api mv "/models/$TRAIN_MODEL/2" "/models/$TRAIN_MODEL/retired-2"
    "$PYTHON" "${CLIENT[@]}" wait-model "$url" "$TRAIN_MODEL" --version 1 --exact --timeout 30 --grace 10

    log "checking the container's own HEALTHCHECK"
    local health=""
    for _ in $(seq 60); do
        health=$("$DOCKER" inspect --format '{{.State.Health.Status}}' "$container")
        [ "$health" = healthy ] && break
        sleep 1
    done
    [ "$health" = healthy ] || die "the api container's health is '$health', expected healthy"
    echo "container health: $health; runs as uid $("$DOCKER" exec "$container" id -u)" >&2

    local size_mb train_size_mb memory
    memory=$("$DOCKER" stats --no-stream --format '{{.MemUsage}}' "$container")
    size_mb=$("$DOCKER" image inspect --format '{{.Size}}' "$SERVING_IMAGE" | awk '{ printf "%.0f", $1 / 1e6 }')
    train_size_mb=$("$DOCKER" image inspect --format '{{.Size}}' "$TRAIN_IMAGE" | awk '{ printf "%.0f", $1 / 1e6 }')
    printf '\n'
    printf '%-40s %s\n' \
        "image builds (serving + train):" "${build_seconds} s" \
        "serving image $SERVING_IMAGE:" "${size_mb} MB (target < 600 MB)" \
        "training image $TRAIN_IMAGE:" "${train_size_mb} MB" \
        "container start to ready:" "${ready_seconds} s (target < 5 s)" \
        "api memory (2 models, 3 versions seen):" "$memory" \
        "retraining (compose run train):" "${train_seconds} s"
}

main "$@"

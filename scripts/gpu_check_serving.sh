#!/usr/bin/env bash
# One-off serving check on a machine with an NVIDIA GPU (torch with CUDA installed), from the repository root:
#
#     bash scripts/gpu_check_serving.sh
#
# It needs no network: Python packages the machine lacks come from the wheels carried in .whl/ (see
# docs/performance.md for how they were downloaded), and wrk from the Debian packages in .whl/deb/ when they run
# there (else the benchmark uses its Python client). It builds the default bundle in a temporary folder, checks
# that fp16 torch-CUDA gives the same top-5 as fp32 ONNX on three photos, runs the in-process + HTTP benchmark on
# CUDA and prints a short table; the report goes to $OUT/gpu_serving.md when $OUT is set (else a temporary
# folder). About 2-3 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
report_dir=${OUT:-$(mktemp -d)}
work=$(mktemp -d)
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

# Python packages: install a carried wheel only when this machine lacks the package or has an older version.
if compgen -G ".whl/*.whl" >/dev/null; then
    mapfile -t wanted < <(python3 - <<'EOF'
import glob, re
from importlib.metadata import PackageNotFoundError, version

try:
    from packaging.tags import sys_tags
    from packaging.utils import parse_wheel_filename
except ImportError:
    from pip._vendor.packaging.tags import sys_tags
    from pip._vendor.packaging.utils import parse_wheel_filename

here = set(sys_tags())

def key(text):
    return tuple(int(part) if part.isdigit() else 0 for part in re.split(r"[.+-]", text)[:4])

for wheel in sorted(glob.glob(".whl/*.whl")):
    name, carried, _, tags = parse_wheel_filename(wheel.split("/")[-1])
    if not tags & here:
        continue  # built for another Python or platform
    installed = None
    for candidate in (str(name), str(name).replace("-", "_")):
        try:
            installed = version(candidate)
            break
        except PackageNotFoundError:
            pass
    if installed is None or key(installed) < key(str(carried)):
        print(wheel)
EOF
    )
    if [ ${#wanted[@]} -gt 0 ]; then
        echo "installing carried wheels: ${wanted[*]}"
        python3 -m pip install -q --no-index --no-deps --target /tmp/site "${wanted[@]}"
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
fi

# wrk, the load generator, from the carried Debian packages (skipped when it does not run here).
if ! command -v wrk >/dev/null && command -v dpkg >/dev/null && compgen -G ".whl/deb/*.deb" >/dev/null; then
    for deb in .whl/deb/*.deb; do dpkg -x "$deb" "$work/wrk-root"; done
    mkdir -p "$work/bin"
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$work/wrk-root/usr/lib/x86_64-linux-gnu" \
        "$work/wrk-root/usr/bin/wrk" >"$work/bin/wrk"
    chmod +x "$work/bin/wrk"
    if "$work/bin/wrk" --version 2>&1 | grep -q "^wrk"; then
        export PATH=$work/bin:$PATH
    else
        echo "the carried wrk does not run here; the benchmark uses its Python client"
    fi
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 scripts/gpu_check_serving.py --models-dir "$work/models" --output "$report_dir/gpu_serving.md" \
    && status=0 || status=$?
echo "report: $report_dir/gpu_serving.md; took $(($(date +%s) - started)) s"
exit "$status"

#!/bin/sh
# `pip install` for the image builds: the same options in every stage, set from build arguments.
#
# - A CA bundle passed as the BuildKit secret `pipcert` (docker build --secret id=pipcert,src=FILE) is used for
#   HTTPS, for networks that re-sign TLS. It is mounted only while pip runs and never lands in a layer.
# - WHEELHOUSE=1 installs only from the wheels in the build context's .wheelhouse/ folder (pip --no-index
#   --find-links), for air-gapped builds; the folder is bind-mounted at /wheelhouse for the step.
set -eu

if [ -s /run/secrets/pipcert ]; then
    export PIP_CERT=/run/secrets/pipcert
fi

if [ "${WHEELHOUSE:-0}" = 1 ]; then
    if ! ls /wheelhouse/*.whl >/dev/null 2>&1; then
        echo "WHEELHOUSE=1 but .wheelhouse/ holds no wheels; see .wheelhouse/README.md" >&2
        exit 1
    fi
    set -- --no-index --find-links /wheelhouse "$@"
fi

exec pip install --no-cache-dir --disable-pip-version-check "$@"

#!/bin/sh
# Container entrypoint: make sure the models folder holds the models baked into the image, then run the command.
#
# The image keeps its bundles (the default ImageNet model) in a read-only folder, $IMGCLF_EMBEDDED_MODELS. A models
# folder mounted over $IMGCLF_MODELS_DIR (a new named volume, an empty host folder) does not have them yet, so each
# embedded model that the folder lacks *entirely* is copied in: into a hidden temporary folder first (the service
# skips hidden folders), then renamed into place, so the service never sees half a bundle. A model folder that is
# already there is never touched, so versions you trained or removed stay as you left them.
# Set IMGCLF_SEED_MODELS=0 to turn the copy off.
set -eu

models_dir="${IMGCLF_MODELS_DIR:-/models}"
embedded_dir="${IMGCLF_EMBEDDED_MODELS:-/opt/imgclf/models}"

seed_models() {
    for source in "$embedded_dir"/*/; do
        [ -d "$source" ] || continue
        name=$(basename "$source")
        [ -e "$models_dir/$name" ] && continue
        tmp="$models_dir/.tmp-seed-$name-$$"
        if mkdir -p "$models_dir" 2>/dev/null && cp -R "$source" "$tmp" 2>/dev/null \
            && mv -T "$tmp" "$models_dir/$name" 2>/dev/null; then
            echo "imgclf-entrypoint: copied the embedded model $name into $models_dir" >&2
        else
            rm -rf "$tmp" 2>/dev/null || true
            echo "imgclf-entrypoint: warning: could not copy the embedded model $name into $models_dir" \
                "(is it writable by uid $(id -u)?); serving what the folder holds" >&2
        fi
    done
}

if [ "${IMGCLF_SEED_MODELS:-1}" = 1 ] && [ "$models_dir" != "$embedded_dir" ]; then
    seed_models
fi

exec "$@"

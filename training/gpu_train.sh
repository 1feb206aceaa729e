#!/usr/bin/env bash
# Train SiameseResNet18 on a lent NVIDIA H200 in under 10 minutes (device tool), from packed
# crops that travel with the working tree. Prepare here, on the CPU machine:
#   .venv/bin/python -m training.train --pack-to runs/pack/lfw-crops.npz     # ~35 MB
#   (optional) .venv/bin/python -m training.teacher                          # dlib teacher, CPU
# then call the device tool with:
#   command: bash training/gpu_train.sh
#   carry:   ["runs/pack/lfw-crops.npz", "runs/cache/dlib_teacher.npz"]
# The checkpoint, metrics log and curves come back under $OUT; copy best.pt to
# model/weights/siamatch-r18.pt after `siamatch evaluate` on the CPU machine.
# Uses the machine's python3 (torch, torchvision, opencv, tqdm, matplotlib are preinstalled
# there; nothing is downloaded). bf16 autocast and channels_last are on for CUDA in train.py.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu}"
BUDGET_MIN="${BUDGET_MIN:-8}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
teacher=()
[ -f runs/cache/dlib_teacher.npz ] && teacher=(--teacher runs/cache/dlib_teacher.npz)
python3 -m training.train --packed runs/pack/lfw-crops.npz "${teacher[@]}" \
  --device cuda --time-budget-min "$BUDGET_MIN" --p 64 --k 4 --extra 128 --lr 4e-3 \
  --out "$OUT/train" --model-version siamatch-r18-lfw-h200 2>&1 \
  | tr '\r' '\n' | grep -v 'batch/s' | tail -n 40
ls -la "$OUT/train"

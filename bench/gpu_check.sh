#!/usr/bin/env bash
# The issue 5 device check for a lent NVIDIA H200 (about 5 minutes): in-process pairs/s on CUDA
# (bf16 autocast, channels_last, pinned memory; model alone at batch 32..512, whole pipeline on
# LFW and 12 MP photos). Run from the repo root through the device tool, e.g.
#   run(command="bash bench/gpu_check.sh", timeout_s=420)
# The device's python3 has torch, torchvision, OpenCV, Pillow, grpcio, matplotlib and
# prometheus-client; it fetches nothing from the internet. This check imports none of the rest
# (redis, rq, pillow-heif are optional at import). A package that is missing there must be
# CARRIED as wheels: see /work/.library/device/README.md (pip download ... -d .whl; name `.whl`
# in carry); this script installs them into /tmp/site when a .whl/ folder came along.
# The service part (siamatch serve + Redis) is not run here: the device has no redis-server.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/results}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 - <<'PY' || exit 1
import importlib.util, torch
print(f"python3 torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
missing = [m for m in ("torchvision", "cv2", "PIL", "numpy") if importlib.util.find_spec(m) is None]
if missing or not torch.cuda.is_available():
    raise SystemExit(f"cannot run: missing {missing} or no CUDA")
optional = [m for m in ("redis", "rq", "pillow_heif", "prometheus_client", "grpc")
            if importlib.util.find_spec(m) is None]
print("not installed (not needed by this check):", optional or "none")
PY

timeout 300 python3 -m bench.gpu --duration-s "${GPU_DURATION_S:-5}" --out "$OUT" 2>&1 \
  | tee "$OUT/gpu_check.log"

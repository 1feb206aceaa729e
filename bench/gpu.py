"""`python -m bench.gpu`: the in-process floor on CUDA in a few minutes (run by bench/gpu_check.sh).

Prints pairs/s of the model alone (aligned crops, bf16 autocast, channels_last, pinned memory:
model/inference.py's CUDA path) at batch sizes 32..512, and of the worker's whole pipeline at a
few batch sizes, on the LFW photos of tests/fixtures (../shared does not travel to the device)
and on the same faces as 12 MP phone JPEGs. Needs only torch, torchvision, OpenCV, Pillow and
numpy: nothing of Redis, RQ or Prometheus.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bench.inprocess import model_rate, pipeline_rate
from bench.photos import PhotoPair, phone_jpeg

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_PAIRS = (
    ("George_W_Bush_0001.jpg", "George_W_Bush_0002.jpg"),
    ("Colin_Powell_0001.jpg", "Colin_Powell_0002.jpg"),
    ("Colin_Powell_0001.jpg", "Serena_Williams_0001.jpg"),
    ("Tony_Blair_0001.jpg", "George_W_Bush_0001.jpg"),
)


def fixture_pairs() -> list[PhotoPair]:
    folder = ROOT / "tests" / "fixtures"
    return [
        PhotoPair(f"{a}~{b}", (folder / a).read_bytes(), (folder / b).read_bytes())
        for a, b in FIXTURE_PAIRS
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__)
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--model-batch-sizes", default="32,64,128,256,512")
    parser.add_argument("--pipeline-batch-sizes", default="1,32,128")
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of this script")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()

    from model.preprocess import Preprocessor
    from siamatch.settings import Settings
    from worker.main import configure_threads
    from worker.pairs import PairModel

    settings = Settings(device=args.device)
    cuda = args.device.startswith("cuda")
    device_name = torch.cuda.get_device_name(0) if cuda else args.device
    threads = configure_threads(settings)
    started = time.perf_counter()
    model = PairModel.load(settings)
    print(f"device {device_name}, torch {torch.__version__}, "
          f"{threads} CPU threads, model loaded in {time.perf_counter() - started:.1f} s",
          flush=True)  # fmt: skip
    lfw = fixture_pairs()
    preprocessor = Preprocessor(config=model.loaded.preprocess)
    crops = [
        (preprocessor.from_bytes(p.selfie, "selfie").crop,
         preprocessor.from_bytes(p.id_document, "id_document").crop)
        for p in lfw
    ]  # fmt: skip
    figures: dict = {"device": device_name, "model_alone": [], "pipeline": {}}
    for size in (int(v) for v in args.model_batch_sizes.split(",")):
        rate = model_rate(model, crops, size, args.duration_s)
        figures["model_alone"].append({"batch_size": size, "pairs_per_s": rate.pairs_per_s,
                                       "batch_ms_p50": rate.round_ms_p50})  # fmt: skip
        print(f"model alone  batch {size:4d}: {rate.pairs_per_s:10.1f} pairs/s "
              f"({rate.round_ms_p50:.2f} ms per batch)", flush=True)  # fmt: skip
    phone = [PhotoPair(p.name, phone_jpeg(p.selfie), phone_jpeg(p.id_document)) for p in lfw]
    for name, pairs in (("lfw", lfw), ("phone", phone)):
        figures["pipeline"][name] = []
        for size in (int(v) for v in args.pipeline_batch_sizes.split(",")):
            rate = pipeline_rate(model, pairs, size, args.duration_s)
            figures["pipeline"][name].append({"batch_size": size,
                                              "pairs_per_s": rate.pairs_per_s,
                                              "batch_ms_p50": rate.round_ms_p50})  # fmt: skip
            print(f"pipeline {name:5} batch {size:4d}: {rate.pairs_per_s:8.1f} pairs/s "
                  f"({rate.round_ms_p50:.1f} ms per batch; decode/detect/align on one CPU "
                  f"thread)", flush=True)  # fmt: skip
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

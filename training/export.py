"""Export a training checkpoint as the shipped model: fp16 weights (~23 MB) + the metadata.

python -m training.export runs/train-cpu/best.pt model/weights/siamatch-r18.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

from model.checkpoint import load_checkpoint, save_checkpoint


def main(args: argparse.Namespace) -> None:
    loaded = load_checkpoint(args.source)
    save_checkpoint(
        args.target,
        loaded.model,
        model_version=args.model_version or loaded.model_version,
        threshold=loaded.threshold,
        trained=loaded.trained,
        preprocess=loaded.preprocess,
        thresholds=loaded.thresholds,
        metrics=loaded.metrics,
        half=True,
    )
    size_mb = Path(args.target).stat().st_size / 1e6
    print(f"{args.target}: {loaded.model_version} -> fp16, {size_mb:.1f} MB")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, add_help=add_help)
    parser.add_argument("source", type=Path, help="a checkpoint written by training")
    parser.add_argument("target", type=Path, help="where to write the fp16 copy")
    parser.add_argument("--model-version", default="", help="rename the model version")
    return parser


if __name__ == "__main__":
    main(get_args_parser().parse_args())

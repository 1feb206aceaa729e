"""Teacher embeddings from dlib's public-domain (CC0) face model, for knowledge distillation.

Computed on training identities only (never on test identities). dlib's own pipeline is used:
HOG detector, falling back to our YuNet box when HOG misses; 5-point landmarks; 128-D descriptor.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from training.dlib_baseline import dlib_model_dir


class DlibEmbedder:
    def __init__(self) -> None:
        import dlib  # optional dependency: the [baseline] extra

        models = dlib_model_dir()
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(
            str(models / "dlib_face_recognition_resnet_model_v1.dat")
        )

    def embed(self, rgb: np.ndarray, fallback_box: tuple[float, float, float, float] | None):
        # LFW faces (~110 px) are above HOG's 80 px window: no upsampling, 4x less time
        faces = self.detector(rgb, 0)
        if faces:
            rect = max(faces, key=lambda r: r.width() * r.height())
        elif fallback_box is not None:
            x, y, w, h = (int(round(v)) for v in fallback_box)
            rect = self._dlib.rectangle(x, y, x + w, y + h)
        else:
            return None
        shape = self.landmarks(rgb, rect)
        return np.asarray(self.encoder.compute_face_descriptor(rgb, shape), dtype=np.float32)


def main(args: argparse.Namespace) -> None:
    from PIL import Image

    from model.detect import FaceDetector
    from training.lfw import identities_in_pair_list, list_identities

    excluded = identities_in_pair_list(args.exclude_pairs)
    identities = list_identities(args.data)
    paths = [p for name, ps in identities.items() if name not in excluded for p in ps]
    embedder = DlibEmbedder()
    detector = FaceDetector()
    out = Path(args.out)
    done: dict[str, np.ndarray] = {}
    if out.is_file():
        with np.load(out) as saved:
            done = dict(zip(saved["paths"].tolist(), saved["embeddings"], strict=True))
    todo = [p for p in paths if str(p.relative_to(args.data)) not in done]
    for i, path in enumerate(tqdm(todo, desc="dlib teacher", unit="img")):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        faces = detector.detect_all(rgb)
        emb = embedder.embed(rgb, faces[0].box if faces else None)
        if emb is not None:
            done[str(path.relative_to(args.data))] = emb
        if (i + 1) % 500 == 0 or i + 1 == len(todo):
            _save(out, done)
    _save(out, done)


def _save(out: Path, done: dict[str, np.ndarray]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, paths=np.array(list(done)), embeddings=np.stack(list(done.values())))
    os.replace(tmp, out)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/lfw/lfw-deepfunneled"))
    parser.add_argument(
        "--exclude-pairs", type=Path, default=Path("../shared/data/lfw/pairsDevTest.txt")
    )
    parser.add_argument("--out", type=Path, default=Path("runs/cache/dlib_teacher.npz"))
    return parser


if __name__ == "__main__":
    main(get_args_parser().parse_args())

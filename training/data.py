"""Training data: identity-disjoint splits, the aligned-crop cache, and P x K batches.

Every photo goes through model.preprocess.Preprocessor (the serving path) once; the aligned
112x112 crops are cached in one .npz so that epochs never re-detect.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.errors import ImageError
from model.preprocess import Preprocessor
from training.lfw import identities_in_pair_list, list_identities


@dataclass
class Split:
    train: dict[str, list[Path]]
    val: dict[str, list[Path]]
    excluded: set[str]


def split_identities(
    root: Path, exclude_pairs: list[Path], val_fraction: float, seed: int
) -> Split:
    """Drop every identity named in `exclude_pairs`; hold out a seeded fraction of the
    multi-image identities (plus as many single-image ones) for validation."""
    identities = list_identities(root)
    excluded: set[str] = set()
    for pairs in exclude_pairs:
        excluded |= identities_in_pair_list(pairs)
    usable = {n: ps for n, ps in identities.items() if n not in excluded}
    rng = random.Random(seed)
    multi = sorted(n for n, ps in usable.items() if len(ps) >= 2)
    single = sorted(n for n, ps in usable.items() if len(ps) == 1)
    val_names = set(rng.sample(multi, max(1, int(len(multi) * val_fraction))))
    val_names |= set(rng.sample(single, min(len(single), len(val_names))))
    return Split(
        train={n: ps for n, ps in usable.items() if n not in val_names},
        val={n: ps for n, ps in usable.items() if n in val_names},
        excluded=excluded,
    )


@dataclass
class CropSet:
    crops: np.ndarray  # N x S x S x 3 uint8
    labels: np.ndarray  # N int64, dense identity index
    paths: list[str]  # relative to the data root
    names: list[str]  # identity name of each label
    failures: list[str]  # paths where no face was found

    def __len__(self) -> int:
        return len(self.labels)


def build_crops(
    identities: dict[str, list[Path]],
    root: Path,
    cache_dir: Path,
    preprocessor: Preprocessor,
    desc: str,
) -> CropSet:
    """Aligned crops for `identities`, read from / written to a cache keyed by the file list and
    the preprocessing config."""
    files = [(name, path) for name, paths in sorted(identities.items()) for path in paths]
    key_src = json.dumps(
        [preprocessor.config.to_dict(), preprocessor.detector_score, [str(p) for _, p in files]]
    )
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"crops-{desc}-{key}.npz"
    names = sorted(identities)
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            return CropSet(
                data["crops"],
                data["labels"],
                data["paths"].tolist(),
                names,
                data["failures"].tolist(),
            )
    index = {n: i for i, n in enumerate(names)}
    crops, labels, rel_paths, failures = [], [], [], []
    for name, path in tqdm(files, desc=f"aligning {desc}", unit="img"):
        rel = str(Path(path).relative_to(root))
        try:
            aligned = preprocessor.from_bytes(Path(path).read_bytes(), rel)
        except ImageError:
            failures.append(rel)
            continue
        crops.append(aligned.crop)
        labels.append(index[name])
        rel_paths.append(rel)
    size = preprocessor.config.input_size
    crop_array = np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        crops=crop_array,
        labels=np.array(labels, np.int64),
        paths=np.array(rel_paths),
        failures=np.array(failures, dtype=str),
    )
    os.replace(tmp, cache)
    return CropSet(crop_array, np.array(labels, np.int64), rel_paths, names, failures)


class PKSampler:
    """Batches of P identities x K images (with replacement when a person has fewer than K),
    plus `extra` random images of anyone: positives and hard negatives in every batch."""

    def __init__(self, labels: np.ndarray, p: int, k: int, extra: int, seed: int) -> None:
        self.by_label: dict[int, np.ndarray] = {}
        for label in np.unique(labels):
            self.by_label[int(label)] = np.flatnonzero(labels == label)
        self.multi = [lbl for lbl, idx in self.by_label.items() if len(idx) >= 2]
        self.num_images = len(labels)
        self.p, self.k, self.extra = p, k, extra
        self.rng = np.random.default_rng(seed)

    @property
    def batch_size(self) -> int:
        return self.p * self.k + self.extra

    def __len__(self) -> int:
        return max(1, self.num_images // self.batch_size)

    def batches(self):
        for _ in range(len(self)):
            chosen = self.rng.choice(self.multi, size=self.p, replace=False)
            batch = []
            for label in chosen:
                pool = self.by_label[int(label)]
                batch.extend(self.rng.choice(pool, size=self.k, replace=len(pool) < self.k))
            batch.extend(self.rng.integers(0, self.num_images, size=self.extra))
            yield np.array(batch)


def pack_crops(train: CropSet, val: CropSet, path: Path, quality: int = 85) -> None:
    """Both splits' aligned crops as JPEG bytes in one .npz (~35 MB for LFW instead of ~400 MB
    raw): small enough to travel to a lent GPU machine with the working tree."""
    import cv2

    arrays: dict[str, np.ndarray] = {}
    for split, crops in (("train", train), ("val", val)):
        encoded = [
            cv2.imencode(".jpg", c[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
            for c in tqdm(crops.crops, desc=f"packing {split}", unit="img")
        ]
        offsets = np.cumsum([0] + [len(e) for e in encoded])
        arrays.update(
            {
                f"{split}_jpeg": np.frombuffer(b"".join(encoded), np.uint8),
                f"{split}_offsets": offsets,
                f"{split}_labels": crops.labels,
                f"{split}_paths": np.array(crops.paths),
                f"{split}_names": np.array(crops.names),
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def load_packed(path: Path) -> tuple[CropSet, CropSet]:
    import cv2

    splits = []
    with np.load(path, allow_pickle=False) as data:
        for split in ("train", "val"):
            blob, offsets = data[f"{split}_jpeg"], data[f"{split}_offsets"]
            crops = np.stack(
                [
                    cv2.imdecode(blob[offsets[i] : offsets[i + 1]], cv2.IMREAD_COLOR)[:, :, ::-1]
                    for i in range(len(offsets) - 1)
                ]
            )
            splits.append(
                CropSet(
                    crops,
                    data[f"{split}_labels"],
                    data[f"{split}_paths"].tolist(),
                    data[f"{split}_names"].tolist(),
                    [],
                )
            )
    return splits[0], splits[1]

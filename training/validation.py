"""Held-out-identity pairs for choosing thresholds and the best epoch (never the test pairs)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data import CropSet
from training.metrics import roc_auc, roc_curve, tar_at_far


@dataclass
class ValidationPairs:
    crops: np.ndarray
    a: np.ndarray
    b: np.ndarray
    same: np.ndarray

    @classmethod
    def from_crops(
        cls, crops: CropSet, seed: int, max_pos_per_identity: int = 30, negatives: int = 20_000
    ) -> ValidationPairs:
        """Every identity's positive pairs (capped, so a few prolific people don't dominate)
        and many random negatives: FAR 1e-3 needs at least 1,000 of them, better 10x that."""
        rng = np.random.default_rng(seed)
        pos = []
        for label in np.unique(crops.labels):
            idx = np.flatnonzero(crops.labels == label)
            pairs = [(i, j) for n, i in enumerate(idx) for j in idx[n + 1 :]]
            rng.shuffle(pairs)
            pos.extend(pairs[:max_pos_per_identity])
        a = rng.integers(0, len(crops), size=negatives * 2)
        b = rng.integers(0, len(crops), size=negatives * 2)
        keep = crops.labels[a] != crops.labels[b]
        neg = list(zip(a[keep][:negatives], b[keep][:negatives], strict=True))
        all_pairs = np.array(pos + neg)
        same = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
        return cls(crops.crops, all_pairs[:, 0], all_pairs[:, 1], same)


def balanced_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold maximising (TAR + TNR) / 2 (Youden's J): validation holds far more
    different-person pairs than same-person ones, and plain accuracy would then reject all."""
    far, tar, thresholds = roc_curve(scores, same)
    best = int(np.argmax(tar[1:] - far[1:])) + 1  # skip the +inf "reject everything" point
    return float(thresholds[best])


def validation_metrics(scores: np.ndarray, same: np.ndarray) -> dict:
    threshold = balanced_threshold(scores, same)
    far3 = tar_at_far(scores, same, 1e-3)
    far2 = tar_at_far(scores, same, 1e-2)
    balanced = 0.5 * (
        float((scores[same] >= threshold).mean()) + float((scores[~same] < threshold).mean())
    )
    return {
        "threshold": threshold,
        "balanced_accuracy": balanced,
        "auc": roc_auc(scores, same),
        "tar_far_1e-2": far2.tar,
        "tar_far_1e-3": far3.tar,
        "threshold_far_1e-3": far3.threshold,
        "positives": int(same.sum()),
        "negatives": int((~same).sum()),
    }

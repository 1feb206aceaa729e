"""Verification metrics in pure numpy: ROC, AUC, TAR at a FAR, accuracy, threshold choice.

Conventions, shared by evaluation and by training's validation:
- `scores`: higher means "more likely the same person"; `labels`: 1 same, 0 different.
- A pair that failed to process (no face, undecodable) has score NaN. It is a wrong answer in
  accuracy whatever its label, and it is rejected (treated as the lowest score) in ROC, AUC and
  TAR@FAR, as NIST FRVT does with failures to enrol: failing can never look like a good result.
- A pair is accepted when score >= threshold.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


def _as_arrays(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    return s, y


def _rejecting_failures(scores: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(scores), -np.inf, scores)


def accuracy(scores, labels, threshold: float) -> float:
    """Fraction of pairs judged correctly at `threshold`; failures (NaN) count as wrong."""
    s, y = _as_arrays(scores, labels)
    if s.size == 0:
        return float("nan")
    ok = ~np.isnan(s) & ((s >= threshold) == y)
    return float(ok.mean())


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(far, tar, thresholds): one point per distinct score, from strictest to laxest.

    The first point is (0, 0) at threshold +inf. Accepting `score >= thresholds[k]` gives
    far[k] and tar[k]. Failures sit at -inf, so the last point (1, 1) accepts them too.
    """
    s, y = _as_arrays(scores, labels)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        raise ValueError(f"ROC needs both classes: {positives} same, {negatives} different")
    s = _rejecting_failures(s)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_run = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]  # ties move together
    tp = np.cumsum(y)[last_of_run]
    fp = np.cumsum(~y)[last_of_run]
    tar = np.r_[0.0, tp / positives]
    far = np.r_[0.0, fp / negatives]
    return far, tar, np.r_[np.inf, s[last_of_run]]


def roc_auc(scores, labels) -> float:
    """Area under the ROC (trapezoids; ties count half, as the Mann-Whitney statistic does)."""
    far, tar, _ = roc_curve(scores, labels)
    return float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2.0))


@dataclass(frozen=True)
class TarAtFar:
    """TAR at a target FAR. `tar` is None when `negatives` < `min_negatives` = ceil(1/far):
    with N different-person pairs the smallest FAR above zero is 1/N, so a lower target cannot be
    measured at all (and ~10/far negatives are needed before it is more than a rough estimate).
    """

    far_target: float
    tar: float | None
    threshold: float | None
    far_achieved: float | None
    negatives: int
    min_negatives: int

    @property
    def measurable(self) -> bool:
        return self.tar is not None

    def describe(self) -> str:
        if self.tar is None:
            return f"too few negatives ({self.negatives} < {self.min_negatives})"
        return f"{self.tar:.4f}"

    def to_dict(self) -> dict:
        return {**asdict(self), "measurable": self.measurable}


def threshold_at_far(scores, labels, far: float) -> float:
    """The lowest threshold whose FAR is at most `far` (no measurability check; see tar_at_far).

    Accepting only scores strictly above the (k+1)-th highest different-person score, with
    k = floor(far * negatives), allows at most k false accepts.
    """
    s, y = _as_arrays(scores, labels)
    negative = np.sort(_rejecting_failures(s[~y]))[::-1]
    if negative.size == 0:
        raise ValueError("threshold_at_far needs different-person pairs")
    k = int(math.floor(far * negative.size + 1e-9))
    if k >= negative.size:
        return -np.inf
    return float(np.nextafter(negative[k], np.inf))


def tar_at_far(scores, labels, far: float) -> TarAtFar:
    s, y = _as_arrays(scores, labels)
    negatives = int((~y).sum())
    min_negatives = int(math.ceil(1.0 / far - 1e-9))
    if negatives < min_negatives or not y.any():
        return TarAtFar(far, None, None, None, negatives, min_negatives)
    threshold = threshold_at_far(s, y, far)
    accepted = _rejecting_failures(s) >= threshold
    return TarAtFar(
        far_target=far,
        tar=float(accepted[y].mean()),
        threshold=threshold,
        far_achieved=float(accepted[~y].mean()),
        negatives=negatives,
        min_negatives=min_negatives,
    )


def best_accuracy_threshold(scores, labels) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy on these pairs. Chosen on the pairs it is then
    measured on, so the accuracy is optimistic: use it on validation pairs, never on test pairs.
    Among equally good thresholds the midpoint between neighbouring scores is returned.
    """
    s, y = _as_arrays(scores, labels)
    failures = int(np.isnan(s).sum())
    far, tar, thresholds = roc_curve(s, y)
    positives, negatives = int(y.sum()), int((~y).sum())
    correct = tar * positives + (1.0 - far) * negatives
    # failed negatives are "rejected" in the ROC but count as wrong in accuracy
    correct = correct - int((np.isnan(s) & ~y).sum())
    best = int(np.argmax(correct[:-1] if failures else correct))
    t = thresholds[best]
    finite = np.sort(np.unique(s[~np.isnan(s)]))
    if np.isinf(t):  # reject everything: just above the top score
        t = float(np.nextafter(finite[-1], np.inf)) if finite.size else 0.5
    else:
        below = finite[finite < t]
        if below.size:
            t = float((t + below[-1]) / 2.0)
    return float(t), float(correct[best] / s.size)


def choose_threshold(scores, labels, far: float | None = None) -> float:
    """Operating threshold chosen on validation pairs: the best-accuracy ("balanced") one, or,
    with `far`, the lowest threshold meeting that FAR. Pure function of the given pairs."""
    if far is None:
        return best_accuracy_threshold(scores, labels)[0]
    return threshold_at_far(scores, labels, far)


@dataclass(frozen=True)
class VerificationReport:
    """Every number `siamatch evaluate` reports for one method on one benchmark."""

    pairs: int
    same: int
    different: int
    failures: int
    threshold: float
    accuracy: float
    best_threshold: float
    best_accuracy_optimistic: float
    auc: float
    tar_at_far: dict[str, TarAtFar]
    accuracy_processed_only: float

    def to_dict(self) -> dict:
        data = asdict(self)
        data["tar_at_far"] = {k: v.to_dict() for k, v in self.tar_at_far.items()}
        return data


def summarise(scores, labels, threshold: float, fars=(1e-2, 1e-3)) -> VerificationReport:
    s, y = _as_arrays(scores, labels)
    processed = ~np.isnan(s)
    best_t, best_acc = best_accuracy_threshold(s, y)
    return VerificationReport(
        pairs=int(s.size),
        same=int(y.sum()),
        different=int((~y).sum()),
        failures=int((~processed).sum()),
        threshold=float(threshold),
        accuracy=accuracy(s, y, threshold),
        best_threshold=best_t,
        best_accuracy_optimistic=best_acc,
        auc=roc_auc(s, y),
        tar_at_far={f"{far:g}": tar_at_far(s, y, far) for far in fars},
        accuracy_processed_only=accuracy(s[processed], y[processed], threshold),
    )

"""training.metrics: ROC/AUC/TAR@FAR/threshold choice, checked against brute-force definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.metrics import (
    accuracy,
    best_accuracy_threshold,
    choose_threshold,
    roc_auc,
    roc_curve,
    summarise,
    tar_at_far,
    threshold_at_far,
)


def brute_force_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney: P(same-pair score > different-pair score), ties counting half."""
    pos, neg = scores[labels], scores[~labels]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (pos.size * neg.size)


def test_auc_matches_mann_whitney_with_ties() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(300) < 0.4
    scores = np.round(rng.normal(labels * 1.0, 1.0), 1)  # rounding makes many ties
    assert roc_auc(scores, labels) == pytest.approx(brute_force_auc(scores, labels), abs=1e-12)


def test_auc_extremes() -> None:
    labels = np.array([1, 1, 0, 0], bool)
    assert roc_auc([0.9, 0.8, 0.2, 0.1], labels) == 1.0
    assert roc_auc([0.1, 0.2, 0.8, 0.9], labels) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], labels) == 0.5


def test_roc_curve_starts_at_origin_and_ends_at_one() -> None:
    far, tar, thresholds = roc_curve([0.9, 0.4, 0.6, 0.1], [1, 1, 0, 0])
    assert (far[0], tar[0], thresholds[0]) == (0.0, 0.0, np.inf)
    assert (far[-1], tar[-1]) == (1.0, 1.0)
    assert np.all(np.diff(far) >= 0) and np.all(np.diff(tar) >= 0)


def test_roc_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both classes"):
        roc_curve([0.1, 0.2], [1, 1])


def test_tar_at_far_allows_at_most_far_times_negatives_false_accepts() -> None:
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    scores = rng.normal(labels * 2.0, 1.0)
    result = tar_at_far(scores, labels, 1e-2)
    assert result.measurable
    accepted = scores >= result.threshold
    assert accepted[~labels].sum() == 3  # floor(0.01 * 300), none more
    assert result.far_achieved == pytest.approx(3 / 300)
    assert result.tar == pytest.approx(accepted[labels].mean())
    # the threshold is the lowest such: accepting the next negative would exceed the target
    negatives = np.sort(scores[~labels])[::-1]
    assert result.threshold == pytest.approx(negatives[3], abs=1e-9)
    assert result.threshold > negatives[3]


def test_tar_at_far_says_when_there_are_too_few_negatives() -> None:
    labels = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    scores = np.linspace(0, 1, 1000)
    result = tar_at_far(scores, labels, 1e-3)
    assert not result.measurable and result.tar is None
    assert (result.negatives, result.min_negatives) == (500, 1000)
    assert result.describe() == "too few negatives (500 < 1000)"
    assert tar_at_far(scores, labels, 1e-2).measurable  # 500 >= 100


def test_failures_are_wrong_in_accuracy_and_rejected_in_the_roc() -> None:
    labels = np.array([1, 1, 0, 0], bool)
    scores = np.array([0.9, np.nan, 0.1, np.nan])
    assert accuracy(scores, labels, 0.5) == 0.5  # both failures wrong, whatever their label
    far, tar, _ = roc_curve(scores, labels)
    # the failed same-pair is never accepted before every real score has been
    assert tar[far < 1.0].max() == 0.5
    assert roc_auc(scores, labels) == pytest.approx(
        brute_force_auc(np.nan_to_num(scores, nan=-np.inf), labels)
    )
    report = summarise(scores, labels, 0.5)
    assert report.failures == 2
    assert report.accuracy_processed_only == 1.0
    assert report.best_accuracy_optimistic == 0.5  # failures stay wrong at any threshold


def test_best_accuracy_threshold_is_a_midpoint_between_scores() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0], bool)
    scores = np.array([0.9, 0.8, 0.4, 0.6, 0.2, 0.1])
    threshold, best = best_accuracy_threshold(scores, labels)
    assert best == pytest.approx(5 / 6)
    assert accuracy(scores, labels, threshold) == best
    assert threshold in (pytest.approx(0.7), pytest.approx(0.3))


def test_choose_threshold_balanced_and_at_far() -> None:
    rng = np.random.default_rng(2)
    labels = np.r_[np.ones(1000, bool), np.zeros(1000, bool)]
    scores = rng.normal(labels * 3.0, 1.0)
    balanced = choose_threshold(scores, labels)
    assert 1.0 < balanced < 2.0  # near the midpoint of the two Gaussians
    strict = choose_threshold(scores, labels, far=1e-3)
    assert strict == threshold_at_far(scores, labels, 1e-3)
    assert (scores[~labels] >= strict).sum() <= math.floor(1e-3 * 1000)
    assert strict > balanced

"""Training losses: pair mining keeps both hard and easy negatives; CosFace learns."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.losses import (
    CosFace,
    embedding_distillation,
    mine_pairs,
    pair_loss,
    similarity_distillation,
)


def test_mined_pairs_hold_every_positive_and_only_true_negatives() -> None:
    torch.manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 4])
    emb = F.normalize(torch.randn(8, 16), dim=1)
    a, b, targets = mine_pairs(emb, labels)
    same = labels[a] == labels[b]
    assert torch.equal(same.float(), targets)
    assert int(targets.sum()) == 3  # indices (0,1), (2,3), (4,5): the same-label pairs
    assert not torch.any(a[targets == 1] == b[targets == 1])
    # hard (1 per anchor) + random (up to 2 per anchor): more negatives than anchors
    assert int((targets == 0).sum()) > len(labels)


def test_random_negatives_include_easy_ones() -> None:
    """Not only the hardest: some mined negatives are less similar than the hardest one."""
    torch.manual_seed(1)
    labels = torch.arange(32) // 2
    emb = F.normalize(torch.randn(32, 16), dim=1)
    a, b, targets = mine_pairs(emb, labels)
    neg_sim = (emb[a] * emb[b]).sum(1)[targets == 0]
    assert neg_sim.min() < neg_sim.max() - 0.3


def test_pair_loss_balances_classes() -> None:
    logits = torch.tensor([5.0, -5.0, -5.0, -5.0])
    targets = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert pair_loss(logits, targets) < 0.01
    assert pair_loss(-logits, targets) > 1.0


def test_cosface_loss_falls_when_embeddings_match_their_class() -> None:
    torch.manual_seed(0)
    head = CosFace(8, 4)
    labels = torch.tensor([0, 1, 2, 3])
    matching = F.normalize(head.weight.detach().clone(), dim=1)
    random = F.normalize(torch.randn(4, 8), dim=1)
    assert head(matching, labels) < head(random, labels)


def test_similarity_distillation_is_zero_for_a_matching_structure() -> None:
    emb = F.normalize(torch.randn(6, 8), dim=1)
    has = torch.ones(6, dtype=torch.bool)
    assert similarity_distillation(emb, emb * 3.0, has) < 1e-6
    assert similarity_distillation(emb, torch.randn(6, 8), has) > 0.01


def test_embedding_distillation_is_zero_at_the_teacher_and_skips_images_without_one() -> None:
    torch.manual_seed(0)
    teacher = torch.randn(6, 128)
    has = torch.tensor([True, True, True, False, False, True])
    assert embedding_distillation(teacher.clone(), teacher, has) < 1e-9
    predicting_nothing = embedding_distillation(torch.zeros(6, 128), teacher, has)
    assert abs(float(predicting_nothing) - 1.0) < 1e-6  # the variance normalisation
    wrong_only_where_absent = teacher.clone()
    wrong_only_where_absent[3:5] += 5.0
    assert embedding_distillation(wrong_only_where_absent, teacher, has) < 1e-9
    assert embedding_distillation(teacher, teacher, torch.zeros(6, dtype=torch.bool)) == 0.0

"""Losses: CosFace margin classification on the embedding, the pair loss on the concatenation
head, and distillation of the teacher's similarity structure."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CosFace(nn.Module):
    """Large margin cosine loss (Wang et al., CVPR 2018): s * (cos(theta) - m) for the true class.
    s=30, m=0.35 as in insightface's arcface_torch CosFace config, lowered from s=64 because
    the small-data, short schedule here converges badly with s=64."""

    def __init__(self, embedding_dim: int, num_classes: int, s: float = 30.0, m: float = 0.35):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, embedding_dim) * 0.01)
        self.s, self.m = s, m

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = embeddings @ F.normalize(self.weight, dim=1).t()
        margin = F.one_hot(labels, cosine.shape[1]).to(cosine.dtype) * self.m
        return F.cross_entropy(self.s * (cosine - margin), labels)


def mine_pairs(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    hard_per_anchor: int = 1,
    random_per_anchor: int = 2,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All positive pairs in the batch, and per anchor its hardest negative(s) plus random ones.

    Hardest negatives alone are a biased sample: early in training they are MORE similar than
    the positives, and the head then learns "very similar means different" (seen here: AUC 0.42
    on held-out identities after one epoch). Random negatives keep the easy end of the
    distribution in view. Returns index tensors (a, b) and targets (1 same, 0 different)."""
    n = len(labels)
    device = labels.device
    with torch.no_grad():
        sim = embeddings @ embeddings.t()
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(n, dtype=torch.bool, device=device)
        pos_a, pos_b = torch.nonzero(torch.triu(same & ~eye), as_tuple=True)
        neg_sim = sim.masked_fill(same, -2.0)
        k = min(hard_per_anchor, n - 1)
        hard_b = neg_sim.topk(k, dim=1).indices.reshape(-1)
        hard_a = torch.arange(n, device=device).repeat_interleave(k)
        rand_a = torch.arange(n, device=device).repeat_interleave(random_per_anchor)
        rand_b = torch.randint(0, n, (len(rand_a),), device=device)
        neg_a = torch.cat([hard_a, rand_a])
        neg_b = torch.cat([hard_b, rand_b])
        valid = ~same[neg_a, neg_b]
        neg_a, neg_b = neg_a[valid], neg_b[valid]
    a = torch.cat([pos_a, neg_a])
    b = torch.cat([pos_b, neg_b])
    targets = torch.cat([torch.ones_like(pos_a), torch.zeros_like(neg_a)]).float()
    return a, b, targets


def pair_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE with positives and negatives weighted equally whatever their counts."""
    pos = targets.sum().clamp(min=1)
    neg = (1 - targets).sum().clamp(min=1)
    weights = torch.where(targets > 0, 0.5 / pos, 0.5 / neg)
    return (F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * weights).sum()


def similarity_distillation(
    student: torch.Tensor, teacher: torch.Tensor, has_teacher: torch.Tensor
) -> torch.Tensor:
    """Match the student's pairwise cosine similarities to the teacher's (relational
    distillation: the metric structure is what verification uses, not the raw coordinates)."""
    idx = torch.nonzero(has_teacher, as_tuple=True)[0]
    if len(idx) < 2:
        return student.sum() * 0.0
    s = student[idx]
    t = F.normalize(teacher[idx], dim=1)
    return F.mse_loss(s @ s.t(), t @ t.t()) * 10.0


def embedding_distillation(
    projected: torch.Tensor, teacher: torch.Tensor, has_teacher: torch.Tensor
) -> torch.Tensor:
    """Regress each image's (mean-centred) teacher descriptor from a linear map of the
    student's embedding. The relational term above only sees within-batch similarities; this
    gives every image 128 targets, far more signal per photo on a small dataset, and the
    student learns to give an ID-degraded view the descriptor of the clean photo. Normalised by
    the teacher's variance: 1.0 is no better than predicting the mean."""
    idx = torch.nonzero(has_teacher, as_tuple=True)[0]
    if len(idx) == 0:
        return projected.sum() * 0.0
    p, t = projected[idx], teacher[idx]
    return ((p - t) ** 2).sum(1).mean() / (t**2).sum(1).mean().clamp(min=1e-8)

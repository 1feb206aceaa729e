"""SiameseResNet18: one torchvision ResNet18 shared by both images → embedding →
concatenation → three fully connected layers → similarity score in [0, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18


class SiameseResNet18(nn.Module):
    def __init__(
        self,
        embedding_dim: int = 256,
        head_hidden: tuple[int, int] = (256, 64),
        imagenet_weights: bool = False,
    ) -> None:
        """`imagenet_weights` needs torchvision's ResNet18 ImageNet file in the torch hub cache
        (torchvision would otherwise download it); this project trains from scratch."""
        super().__init__()
        self.embedding_dim = embedding_dim
        self.head_hidden = head_hidden
        backbone = resnet18(weights=ResNet18_Weights.IMAGENET1K_V1 if imagenet_weights else None)
        backbone.fc = nn.Identity()
        self.backbone = backbone
        self.embed = nn.Sequential(
            nn.Linear(512, embedding_dim, bias=False), nn.BatchNorm1d(embedding_dim)
        )
        hidden1, hidden2 = head_hidden
        self.head = nn.Sequential(
            nn.Linear(2 * embedding_dim, hidden1),
            nn.ReLU(inplace=True),
            nn.Linear(hidden1, hidden2),
            nn.ReLU(inplace=True),
            nn.Linear(hidden2, 1),
        )

    def embedding(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-length embeddings; training also reads them for the margin and pair losses."""
        return F.normalize(self.embed(self.backbone(images)), dim=1)

    def logits(self, emb_a: torch.Tensor, emb_b: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid similarity. Averaged over both concatenation orders, so that
        score(a, b) == score(b, a) holds by construction, not by luck of training."""
        forward = self.head(torch.cat([emb_a, emb_b], dim=1))
        backward = self.head(torch.cat([emb_b, emb_a], dim=1))
        return ((forward + backward) / 2).squeeze(1)

    def forward(self, images_a: torch.Tensor, images_b: torch.Tensor) -> torch.Tensor:
        """Similarity scores in [0, 1], one per pair. Both sides share one backbone pass."""
        embeddings = self.embedding(torch.cat([images_a, images_b], dim=0))
        emb_a, emb_b = embeddings.split(images_a.shape[0], dim=0)
        return torch.sigmoid(self.logits(emb_a, emb_b))

"""Batches of aligned crop pairs → similarity scores. Device and precision choices live here only.

On CUDA: channels_last, bf16 autocast, pinned host memory and one host→device copy per batch.
On CPU: float32, with the thread count set by the caller (a worker shares the cores).
"""

from __future__ import annotations

import numpy as np
import torch

from model.checkpoint import LoadedModel
from model.preprocess import crops_to_tensor


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return device


class PairScorer:
    def __init__(self, loaded: LoadedModel, device: str = "auto") -> None:
        self.loaded = loaded
        self.device = pick_device(device)
        self.model = loaded.model.to(self.device).eval()
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def embed(self, crops: list[np.ndarray]) -> torch.Tensor:
        batch = crops_to_tensor(crops, self.loaded.preprocess)
        if self.device.type == "cuda":
            batch = batch.pin_memory().to(self.device, non_blocking=True)
            batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return self.model.embedding(batch).float()
        return self.model.embedding(batch)

    @torch.inference_mode()
    def score(self, crops_a: list[np.ndarray], crops_b: list[np.ndarray]) -> np.ndarray:
        """Scores for pairs (crops_a[i], crops_b[i]); both sides go through one forward pass."""
        if not crops_a:
            return np.zeros(0, dtype=np.float32)
        embeddings = self.embed(list(crops_a) + list(crops_b))
        emb_a, emb_b = embeddings.split(len(crops_a), dim=0)
        logits = self.model.logits(emb_a, emb_b)
        return torch.sigmoid(logits.float()).cpu().numpy()

"""Checkpoints as plain data (loadable with weights_only=True): weights + what serving needs.

A checkpoint carries the model version, architecture, preprocessing, decision threshold(s) and
whether the weights were trained, so a worker can never feed or judge a model the wrong way.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from model.errors import CheckpointError
from model.preprocess import PreprocessConfig
from model.siamese import SiameseResNet18

FORMAT_VERSION = 1
SHIPPED_CHECKPOINT = Path(__file__).parent / "weights" / "siamatch-r18.pt"
UNTRAINED_VERSION = "siamatch-r18-untrained"


@dataclass
class LoadedModel:
    model: SiameseResNet18
    model_version: str
    preprocess: PreprocessConfig
    threshold: float
    trained: bool
    thresholds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: Path,
    model: SiameseResNet18,
    *,
    model_version: str,
    threshold: float,
    trained: bool,
    preprocess: PreprocessConfig | None = None,
    thresholds: dict[str, float] | None = None,
    metrics: dict[str, Any] | None = None,
    half: bool = False,
    extra: dict[str, Any] | None = None,
) -> None:
    """Atomic write (temp file + rename): a crash never leaves a half-written checkpoint."""
    state = {
        k: (v.half() if half and v.is_floating_point() else v)
        for k, v in model.state_dict().items()
    }
    payload = {
        "format_version": FORMAT_VERSION,
        "architecture": {
            "name": "SiameseResNet18",
            "embedding_dim": model.embedding_dim,
            "head_hidden": list(model.head_hidden),
        },
        "model_version": model_version,
        "preprocess": (preprocess or PreprocessConfig()).to_dict(),
        "threshold": float(threshold),
        "thresholds": {k: float(v) for k, v in (thresholds or {}).items()},
        "trained": bool(trained),
        "metrics": metrics or {},
        "state_dict": {k: v.cpu() for k, v in state.items()},
        **(extra or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a model file is meant to be read
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise CheckpointError(f"checkpoint {path} is unreadable: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        found = payload.get("format_version") if isinstance(payload, dict) else type(payload)
        raise CheckpointError(
            f"checkpoint {path} has format {found!r}; this code reads format {FORMAT_VERSION}"
        )
    return payload


def load_checkpoint(path: Path) -> LoadedModel:
    payload = read_checkpoint(path)
    arch = payload["architecture"]
    if arch.get("name") != "SiameseResNet18":
        raise CheckpointError(f"checkpoint {path} holds {arch.get('name')!r}, not SiameseResNet18")
    model = SiameseResNet18(
        embedding_dim=int(arch["embedding_dim"]), head_hidden=tuple(arch["head_hidden"])
    )
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not fit SiameseResNet18: {exc}") from exc
    model.eval()
    return LoadedModel(
        model=model,
        model_version=str(payload["model_version"]),
        preprocess=PreprocessConfig.from_dict(payload["preprocess"]),
        threshold=float(payload["threshold"]),
        trained=bool(payload["trained"]),
        thresholds=dict(payload.get("thresholds", {})),
        metrics=dict(payload.get("metrics", {})),
    )


def untrained_model(seed: int = 0) -> LoadedModel:
    """Random weights (seeded, so every worker agrees) for when no checkpoint is shipped."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = SiameseResNet18().eval()
    torch.random.set_rng_state(generator_state)
    return LoadedModel(model, UNTRAINED_VERSION, PreprocessConfig(), 0.5, trained=False)


def load_default_or(path: str | Path | None) -> LoadedModel:
    """The checkpoint at `path`; with no path, the shipped one, else untrained weights."""
    if path:
        return load_checkpoint(Path(path))
    if SHIPPED_CHECKPOINT.is_file():
        return load_checkpoint(SHIPPED_CHECKPOINT)
    return untrained_model()

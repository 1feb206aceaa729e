"""Training curves (loss terms, validation AUC/accuracy per epoch) as one PNG."""

from __future__ import annotations

from pathlib import Path


def plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    for key in ("loss", "cosface", "pair", "distill", "embed_distill"):
        if all(key in h for h in history):  # runs from before a term existed lack it
            left.plot(epochs, [h[key] for h in history], marker="o", label=key)
    left.set_xlabel("epoch")
    left.set_ylabel("training loss")
    left.legend()
    left.grid(alpha=0.3)
    for key, label in (
        ("val_auc", "val ROC AUC"),
        ("val_balanced_accuracy", "val balanced acc"),
        ("pair_accuracy", "train pair acc"),
    ):
        right.plot(epochs, [h[key] for h in history], marker="o", label=label)
    right.set_xlabel("epoch")
    right.set_ylim(0.4, 1.0)
    right.legend()
    right.grid(alpha=0.3)
    fig.suptitle("SiameseResNet18 training (held-out identities for validation)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

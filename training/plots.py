"""PNG plots of evaluation results (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.metrics import roc_curve


def _pyplot():
    """Imported lazily and forced to Agg so that importing this module does no work."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> None:
    """`curves`: label -> (scores, labels). Log-scale FAR axis: the operating points that matter
    for identity checks (FAR 1e-2, 1e-3) are invisible on a linear one."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5), dpi=120)
    smallest = 1.0
    for label, (scores, labels) in curves.items():
        far, tar, _ = roc_curve(scores, labels)
        negatives = int((~np.asarray(labels).astype(bool)).sum())
        smallest = min(smallest, 1.0 / max(negatives, 1))
        ax.step(np.maximum(far, 1.0 / (10 * max(negatives, 1))), tar, where="post", label=label)
    ax.set_xscale("log")
    ax.set_xlim(smallest / 2, 1.0)
    ax.set_ylim(0.0, 1.01)
    for far in (1e-3, 1e-2):
        ax.axvline(far, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xlabel("false accept rate (log; 1/negatives is the smallest measurable)")
    ax.set_ylabel("true accept rate")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def plot_score_histogram(
    scores: np.ndarray, labels: np.ndarray, threshold: float, path: Path, title: str, xlabel: str
) -> None:
    """Same- and different-person score distributions with the decision threshold; failures
    (NaN scores) are counted in the legend, not drawn."""
    plt = _pyplot()
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    ok = ~np.isnan(s)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    finite = s[ok]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 50)
    for mask, name, colour in ((y, "same person", "tab:green"), (~y, "different", "tab:red")):
        failed = int((mask & ~ok).sum())
        label = f"{name} (n={int((mask & ok).sum())}" + (f", {failed} failed)" if failed else ")")
        ax.hist(s[mask & ok], bins=bins, alpha=0.55, color=colour, label=label)
    ax.axvline(
        threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:.3g}"
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("pairs")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)

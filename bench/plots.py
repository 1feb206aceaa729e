"""The benchmark's PNG plots: throughput vs concurrency, latency CDF, batching sweep."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def throughput_vs_concurrency(report: dict, path: Path) -> Path:
    """Service pairs/s at each concurrency per photo set; the in-process floor and dlib as lines."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, (name, runs) in enumerate(report["service"].items()):
        colour = f"C{index}"
        xs = [r["concurrency"] for r in runs]
        ax.plot(xs, [r["pairs_per_s"] for r in runs], "o-", color=colour, label=f"service, {name}")
        floor = report["floor"].get(name, {}).get("best_pairs_per_s")
        if floor:
            ax.axhline(floor, color=colour, linestyle="--", label=f"in-process floor, {name}")
    dlib = report.get("dlib", {}).get("pairs_per_s")
    if dlib:
        ax.axhline(dlib, color="grey", linestyle=":", label="dlib (lfw)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent callers")
    ax.set_ylabel("pairs / s")
    ax.set_title("Throughput vs concurrency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def latency_cdf(latencies: dict[str, dict[int, list[float]]], path: Path) -> Path:
    """One CDF per (photo set, concurrency) of the successful calls' latencies."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = ("-", "--", ":", "-.")
    for set_index, (name, by_concurrency) in enumerate(latencies.items()):
        for c_index, (concurrency, values) in enumerate(sorted(by_concurrency.items())):
            if not values:
                continue
            xs = np.sort(values)
            ys = np.arange(1, len(xs) + 1) / len(xs)
            ax.step(
                xs,
                ys,
                where="post",
                color=f"C{c_index}",
                linestyle=styles[set_index % len(styles)],
                label=f"{name}, {concurrency} caller(s)",
            )
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of calls")
    ax.set_title("Verify latency CDF")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def batching_sweep(sweep: list[dict], path: Path) -> Path:
    """Throughput vs p99 for each (max batch size, max wait); one colour per batch size."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sizes = sorted({r["max_batch_size"] for r in sweep})
    for index, size in enumerate(sizes):
        runs = [r for r in sweep if r["max_batch_size"] == size]
        ax.plot(
            [r["p99_ms"] for r in runs],
            [r["pairs_per_s"] for r in runs],
            "o",
            color=f"C{index}",
            label=f"max batch {size}",
        )
        for r in runs:
            ax.annotate(
                f"{r['max_batch_wait_ms']:g} ms",
                (r["p99_ms"], r["pairs_per_s"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xlabel("p99 latency (ms)")
    ax.set_ylabel("pairs / s")
    ax.set_title("Batching sweep (labels: max wait)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

"""A worker's Prometheus metrics: batch sizes, queue wait, preprocessing and inference time, and
how each pair ended; served on /metrics when Settings.metrics_port is set.

Each worker owns its own registry (no module-level metrics: nothing at import time). The
Batcher records into it whether or not a listener serves it, so the hot path has no branches.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from siamatch.metrics_endpoint import MetricsEndpoint
from worker.contract import Outcome

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# A queue wait is milliseconds when workers keep up and seconds when they do not.
WAIT_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# CPU: ~25 ms per pair for the model and 10-100 ms to decode and detect; GPU: far less.
STAGE_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
)  # fmt: skip


class WorkerMetrics(MetricsEndpoint):
    """The worker's metric families in a registry of its own, and the /metrics listener."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_size = Histogram(
            "siamatch_worker_batch_size",
            "Jobs claimed per batch (one model pass).",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "siamatch_worker_queue_wait_seconds",
            "Time from a job's enqueue to its claim by this worker.",
            buckets=WAIT_BUCKETS_S,
            registry=self.registry,
        )
        self.preprocess = Histogram(
            "siamatch_worker_preprocess_seconds",
            "Decode, detect and align of one pair (both images).",
            buckets=STAGE_BUCKETS_S,
            registry=self.registry,
        )
        self.inference = Histogram(
            "siamatch_worker_inference_seconds",
            "One model pass over a batch of pairs.",
            buckets=STAGE_BUCKETS_S,
            registry=self.registry,
        )
        self.pairs = Counter(
            "siamatch_worker_pairs",
            "Pairs this worker ended, by outcome: OK or the failure reason.",
            ("outcome",),
            registry=self.registry,
        )
        self.batch_errors = Counter(
            "siamatch_worker_batch_errors",
            "Model batches that raised (their pairs were then run one by one).",
            registry=self.registry,
        )
        self.retries = Counter(
            "siamatch_worker_retries",
            "Jobs handed back to RQ for another attempt after an unexpected error.",
            registry=self.registry,
        )

    def observe_batch(self, outcomes: list[Outcome], queue_waits_s: list[float]) -> None:
        """One model batch ended: its size, its pass time, and each pair's stages."""
        self.batch_size.observe(len(outcomes))
        for wait_s in queue_waits_s:
            self.queue_wait.observe(wait_s)
        inference_ms = None
        for outcome in outcomes:
            if outcome.result is not None:
                inference_ms = outcome.result.timings.inference_ms
                self.preprocess.observe(outcome.result.timings.preprocess_ms / 1000.0)
        if inference_ms is not None:
            self.inference.observe(inference_ms / 1000.0)

    def observe_end(self, outcome: Outcome) -> None:
        self.pairs.labels(outcome.failure.reason if outcome.failure is not None else "OK").inc()

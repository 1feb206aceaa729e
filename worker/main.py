"""The worker process: load the model once, claim → run → finish batches, stop on signals.

`run(settings)` is what `siamatch worker` and `siamatch serve` call; `python -m worker.main`
does the same with the worker's flags. SIGTERM (compose, Kubernetes) and SIGINT (Ctrl+C) both
finish the batch in hand, then exit 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType

import redis

from siamatch.settings import Settings
from worker.batcher import Batcher, new_worker
from worker.heartbeat import Heartbeat
from worker.metrics import WorkerMetrics
from worker.pairs import PairModel

log = logging.getLogger("worker")

# How long one blocking wait for a first job lasts; bounds how late a stop request is noticed.
IDLE_POLL_S = 1.0


def configure_threads(settings: Settings) -> int:
    """Split the cores between the workers of one machine (torch and OpenCV both)."""
    import cv2
    import torch

    threads = settings.torch_threads or max(1, (os.cpu_count() or 1) // max(1, settings.workers))
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    return threads


def run(settings: Settings) -> None:
    """Serve jobs until SIGTERM/SIGINT. Blocking; loads the model once, before registering,
    so a worker visible in RQ (see worker.heartbeat.live_workers) is ready to score."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
        )
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("got %s: stopping after the current batch", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    threads = configure_threads(settings)
    model = PairModel.load(settings)
    log.info(
        "model %s loaded (%s) on %s, %d thread(s)",
        model.loaded.model_version,
        "trained" if model.loaded.trained else "UNTRAINED: scores are meaningless",
        model.scorer.device,
        threads,
    )

    metrics = WorkerMetrics()
    if settings.metrics_port:
        # Same host as the gRPC address: `serve` gives each of its workers its own port.
        metrics.serve(settings.address.rsplit(":", 1)[0], settings.metrics_port)
    connection = redis.Redis.from_url(settings.effective_redis_url)
    worker = new_worker(connection)
    batcher = Batcher(worker, settings, metrics)
    worker.register_birth()
    worker.heartbeat(batcher.claim_ttl_s)
    heartbeat = Heartbeat(batcher, settings)
    heartbeat.start()
    log.info(
        "worker %s ready on %s (batch <= %d, wait <= %.1f ms)",
        worker.name,
        settings.effective_redis_url,
        settings.max_batch_size,
        settings.max_batch_wait_ms,
    )
    try:
        serve(batcher, model, stop)
    finally:
        heartbeat.stop()
        metrics.close()
        try:
            worker.register_death()
        except redis.RedisError:
            log.exception("could not record this worker's stop in Redis")
    log.info("worker %s stopped", worker.name)


def serve(batcher: Batcher, model: PairModel, stop: threading.Event) -> None:
    """The loop. Nothing that goes wrong with one batch ends it: a Redis outage pauses it
    (with backoff); claims a batch could not finish stop being heartbeated, so the reaper
    (worker/heartbeat.py) re-queues them."""
    backoff_s = 0.5
    while not stop.is_set():
        try:
            claims = batcher.claim(block_s=IDLE_POLL_S)
            if claims:
                batcher.process(claims, model)
                batcher.idle()
            backoff_s = 0.5
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.error("Redis unreachable (%s); retrying in %.1f s", exc, backoff_s)
            stop.wait(backoff_s)
            backoff_s = min(backoff_s * 2, 10.0)
        except Exception:  # noqa: BLE001 - a bug in one batch must not stop the service
            log.exception("batch bookkeeping failed; its unfinished jobs will be retried")
            stop.wait(backoff_s)
        finally:
            batcher.release_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m worker.main", description="Run one batching siamatch worker."
    )
    Settings.add_arguments(parser, "worker")
    run(Settings.from_args(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

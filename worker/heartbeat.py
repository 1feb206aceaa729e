"""Liveness: this worker's heartbeat, and re-queueing the claims of workers that died.

Every `heartbeat_s` a thread extends this worker's RQ key and the StartedJobRegistry entries
of the jobs it holds to now + 3 periods. One live worker per period (a short Redis lock) then
runs RQ's registry cleanup: a claim whose worker went silent (SIGKILL, power loss) has expired,
and RQ re-queues it if it has retries left. A job out of retries gets a PROCESSING_ERROR Outcome
here, so a waiting caller hears about it instead of waiting for its deadline.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from rq.job import Job
from rq.queue import Queue
from rq.registry import StartedJobRegistry, clean_registries
from rq.serializers import JSONSerializer
from rq.worker import BaseWorker
from rq.worker_registration import clean_worker_registry, get_keys

from siamatch.settings import Settings
from worker.batcher import MISSED_HEARTBEATS, Batcher, store_outcome
from worker.contract import DONE_CHANNEL, QUEUE_NAME, Failure, JobPayload, Outcome
from worker.pairs import payload_of

log = logging.getLogger(__name__)

REAPER_LOCK = "siamatch:reaper-lock"


class Heartbeat(threading.Thread):
    """Daemon thread; `stop()` ends it. Redis errors are logged and retried next period: a
    Redis blip must not kill the worker, and its claims are safe while Redis keeps them."""

    def __init__(self, batcher: Batcher, settings: Settings) -> None:
        super().__init__(name="siamatch-heartbeat", daemon=True)
        self.batcher = batcher
        self.settings = settings
        self.period_s = settings.heartbeat_s
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.period_s):
            try:
                self.beat()
                reap(self.batcher.queue, self.settings)
            except Exception:  # noqa: BLE001 - a dead heartbeat would orphan every claim we hold
                log.exception("heartbeat failed; retrying in %.1f s", self.period_s)

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=max(5.0, 2 * self.period_s))

    def beat(self) -> None:
        batcher = self.batcher
        worker = batcher.worker
        ttl = batcher.claim_ttl_s
        with batcher.lock, batcher.connection.pipeline() as pipe:
            worker.heartbeat(ttl, pipeline=pipe)
            for execution in batcher.held.values():
                execution.heartbeat(batcher.queue.started_job_registry, ttl, pipeline=pipe)
            pipe.execute()


def reap(queue: Queue, settings: Settings) -> None:
    """Re-queue abandoned claims (RQ's StartedJobRegistry.cleanup) at most once per heartbeat
    period across all workers; finish the ones out of attempts with PROCESSING_ERROR."""
    connection = queue.connection
    period_ms = max(1, int(settings.heartbeat_s * 1000))
    if not connection.set(REAPER_LOCK, "1", nx=True, px=period_ms):
        return
    out_of_attempts: list[Job] = []

    def on_abandoned(job: Job, *exc_info: object) -> None:
        if not job.should_retry:
            out_of_attempts.append(job)
        else:
            log.warning("job %s was abandoned by its worker; re-queueing it", job.id)

    clean_registries(queue, exception_handlers=[on_abandoned])
    clean_worker_registry(queue)
    requeue_orphans(queue, settings)
    for job in out_of_attempts:
        log.error("job %s was abandoned by its worker and is out of attempts", job.id)
        payload = _payload(job)
        failure = Failure(
            "PROCESSING_ERROR",
            "",
            f"the worker processing this job stopped {settings.max_attempts} time(s)",
        )
        outcome = Outcome(job.id, payload.client_request_id, failure=failure)
        store_outcome(connection, job.id, outcome, settings.result_ttl_s)
        connection.publish(DONE_CHANNEL, job.id)


def requeue_orphans(queue: Queue, settings: Settings) -> None:
    """Put back ids a worker popped (LMOVE to the intermediate list) but died before marking
    started. An id is only touched once it has sat there for 3 heartbeat periods, so a live
    worker between its pop and its MULTI is never robbed; LREM decides who re-queues it."""
    intermediate = queue.intermediate_queue
    job_ids = intermediate.get_job_ids()
    if not job_ids:
        return
    started = set(StartedJobRegistry(queue=queue).get_job_ids(cleanup=False))
    grace_s = MISSED_HEARTBEATS * settings.heartbeat_s
    for job_id in job_ids:
        if job_id in started or intermediate.set_first_seen(job_id):
            continue
        first_seen = intermediate.get_first_seen(job_id)
        if first_seen is None or time.time() - first_seen.timestamp() < grace_s:
            continue
        if queue.connection.lrem(intermediate.key, 1, job_id):
            log.warning("job %s was popped by a worker that died; re-queueing it", job_id)
            queue.connection.lpush(queue.key, job_id)
        queue.connection.delete(intermediate.get_first_seen_key(job_id))


def _payload(job: Job) -> JobPayload:
    try:
        return payload_of(job.kwargs)
    except Exception:  # noqa: BLE001 - a job we cannot read still gets its failure
        return JobPayload()


def live_workers(connection: redis.Redis) -> list[str]:
    """Names of workers on our queue that sent a heartbeat within the last 3 periods.

    A worker's RQ key expires 3 heartbeat periods after its last beat and gets a `death`
    field when it stops cleanly, so `serve`, health checks and tests can wait on this.
    """
    queue = Queue(QUEUE_NAME, connection=connection, serializer=JSONSerializer)
    names = []
    prefix = BaseWorker.redis_worker_namespace_prefix
    for key in sorted(get_keys(queue)):
        if connection.exists(key) and not connection.hexists(key, "death"):
            names.append(key[len(prefix) :])
    return names

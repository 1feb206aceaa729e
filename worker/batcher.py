"""Claiming batches of RQ jobs (each exactly once) and the per-job bookkeeping around a batch.

Jobs stay ordinary RQ jobs (JSONSerializer) from enqueue to end, so `rq info`, the registries
and `Job.get_status()` tell the truth: queued → started (an Execution in StartedJobRegistry,
kept alive by worker/heartbeat.py) → finished / failed / canceled. Only the loop differs
from RQ's: no fork per job, and many jobs per model pass.

RQ status of a job whose Outcome is a failure:
- NO_FACE / UNDECODABLE_IMAGE: FINISHED. The service answered the request correctly (the
  answer is "no face in the selfie"); the Outcome, stored under result_key and as the job's
  RQ return value, carries the failure, which GetVerifyResult reports as FAILED. Marking these
  jobs failed in RQ would retry a deterministic answer and fill the FailedJobRegistry, which
  is for the service's own failures.
- PROCESSING_ERROR (retries exhausted): FAILED, with the traceback in RQ's failure Result.
- CANCELLED: left CANCELED when the server cancelled the job; FAILED (never retried) when the
  images expired on their own.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass

import redis
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker import BaseWorker, WorkerStatus

from siamatch.settings import Settings
from worker.contract import (
    DONE_CHANNEL,
    IMAGE_SIDES,
    QUEUE_NAME,
    Failure,
    JobPayload,
    Outcome,
    image_key,
    result_key,
)
from worker.metrics import WorkerMetrics
from worker.pairs import Pair, PairModel, failure_outcome, payload_of

log = logging.getLogger(__name__)

# A claim is abandoned when its worker has been silent for this many heartbeat periods.
MISSED_HEARTBEATS = 3
# While filling a batch, the queue is looked at this often (one Redis call each time).
FILL_POLL_S = 0.0005
# Up to ARGV[1] ids from the queue's head to the intermediate list, in one round trip (RQ's
# own LMOVE, repeated; a script runs atomically, so each id still lands in exactly one worker).
MOVE_IDS_LUA = """
local moved = {}
for _ = 1, tonumber(ARGV[1]) do
  local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not id then break end
  moved[#moved + 1] = id
end
return moved
"""


def claim_ttl_s(settings: Settings) -> int:
    """Seconds a claim (StartedJobRegistry entry) lives without a heartbeat. RQ scores the
    registry in whole seconds, so round up and keep at least 2."""
    return max(2, int(-(-MISSED_HEARTBEATS * settings.heartbeat_s // 1)))


class BatchWorker(BaseWorker):
    """RQ's worker bookkeeping (registration, executions, success/failure/retry handling)
    without RQ's work loop: a fork per job would reload the model and cannot use CUDA."""

    def execute_job(self, job: Job, queue: Queue) -> None:  # pragma: no cover - unused
        raise NotImplementedError("BatchWorker runs jobs in batches through Batcher")


def new_worker(connection: redis.Redis) -> BatchWorker:
    name = f"siamatch-{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    worker = BatchWorker([QUEUE_NAME], name=name, connection=connection, serializer=JSONSerializer)
    worker.log_job_description = False
    worker.log_result_lifespan = False
    return worker


@dataclass
class Claim:
    job: Job
    execution: Execution
    pair: Pair


class Batcher:
    """Claims up to `max_batch_size` jobs and records how each one ends.

    Claiming is RQ's own LMOVE from the queue to its intermediate list (atomic: with several
    workers each job id lands in exactly one worker), then one MULTI that marks the jobs
    started, adds their Executions to the StartedJobRegistry and takes them off the
    intermediate list. A worker that dies between the two leaves ids on the intermediate list;
    worker/heartbeat.py puts those back.
    """

    def __init__(
        self, worker: BatchWorker, settings: Settings, metrics: WorkerMetrics | None = None
    ) -> None:
        self.worker = worker
        self.settings = settings
        self.metrics = metrics or WorkerMetrics()
        self.connection: redis.Redis = worker.connection
        self.queue: Queue = worker.queues[0]
        self.claim_ttl_s = claim_ttl_s(settings)
        self._move_ids = self.connection.register_script(MOVE_IDS_LUA)
        self._last_batch_size = 0  # 0: none yet, so the first batch waits its window
        # Executions this worker holds, read by the heartbeat thread.
        self.lock = threading.Lock()
        self.held: dict[str, Execution] = {}

    # --- claiming ---------------------------------------------------------------------------

    def claim(self, block_s: float) -> list[Claim]:
        """Block up to `block_s` for a first job, then fill the batch; [] if none came."""
        job_ids = self._pop_ids(block_s)
        if not job_ids:
            return []
        claimed_at = time.time()
        jobs = Job.fetch_many(job_ids, connection=self.connection, serializer=JSONSerializer)
        runnable: list[Job] = []
        with self.connection.pipeline() as pipe:
            for job_id, job in zip(job_ids, jobs, strict=True):
                if job is None or job.get_status(refresh=False) != JobStatus.QUEUED:
                    # Expired while queued, or cancelled after the pop: nothing to run.
                    log.info("skipping job %s (status %s)", job_id, job and job.get_status(False))
                    pipe.lrem(self.queue.intermediate_queue_key, 1, job_id)
                    continue
                runnable.append(job)
            executions = [self._start(job, pipe) for job in runnable]
            if runnable:
                self.worker.set_state(WorkerStatus.BUSY, pipeline=pipe)
                self.worker.heartbeat(self.claim_ttl_s, pipeline=pipe)
            with self.lock:
                pipe.execute()
                self.held.update({e.job_id: e for e in executions})
        if not runnable:
            return []
        images = self.connection.mget(
            [image_key(job.id, side) for job in runnable for side in IMAGE_SIDES]
        )
        claims = []
        for index, (job, execution) in enumerate(zip(runnable, executions, strict=True)):
            selfie, id_document = images[2 * index], images[2 * index + 1]
            try:
                payload = payload_of(job.kwargs)
            except Exception:  # noqa: BLE001 - not our JSON (a pickle, a foreign job): fail it
                log.exception("job %s has unreadable kwargs", job.id)
                job.retries_left = 0  # reading it again cannot succeed
                self.fail(
                    Claim(job, execution, Pair(job.id, JobPayload(), None, None)),
                    traceback.format_exc(),
                )
                continue
            claims.append(
                Claim(job, execution, Pair(job.id, payload, selfie, id_document, claimed_at))
            )
            log.debug("claimed job %s (attempt %d)", job.id, self._attempt(job))
        return claims

    def _pop_ids(self, block_s: float) -> list[str]:
        """The first id by a blocking BLMOVE (a push wakes it at once), the rest by polling.

        The fill window is NOT a second BLMOVE with a millisecond timeout: Redis checks blocked
        clients' timeouts on its event loop tick (hz 10: every 100 ms), so a 5 ms BLMOVE
        returns after up to 100 ms, measured ~100 ms on Redis 7.0. That idled the worker for
        every batch that did not fill, and added ~70 ms to every lone request.

        The window opens only when traffic comes in bursts: after a batch of one, a job with
        nothing queued behind it runs at once (a lone caller would sit out the whole window
        for company that never comes; measured +5 ms on every call at one caller). A burst
        shows itself at once: several ids queued, and the next batch waits again."""
        source, target = self.queue.key, self.queue.intermediate_queue_key
        first = self.connection.blmove(source, target, block_s, "LEFT", "RIGHT")
        if first is None:
            return []
        job_ids = [first.decode()]
        limit = self.settings.max_batch_size
        deadline = time.monotonic() + self.settings.max_batch_wait_ms / 1000.0
        while len(job_ids) < limit:
            moved = self._move_ids(keys=[source, target], args=[limit - len(job_ids)])
            job_ids += [raw.decode() for raw in moved]
            if len(job_ids) == 1 and self._last_batch_size == 1:
                break  # sparse traffic: nobody is coming within the window, don't wait for them
            remaining = deadline - time.monotonic()
            if len(job_ids) >= limit or remaining <= 0:
                break
            time.sleep(min(remaining, FILL_POLL_S))
        self._last_batch_size = len(job_ids)
        return job_ids

    def _start(self, job: Job, pipe: redis.client.Pipeline) -> Execution:
        execution = Execution.create(
            job, self.claim_ttl_s, pipeline=pipe, worker_name=self.worker.name
        )
        self.worker.executions[execution.id] = execution
        job.prepare_for_execution(self.worker.name, pipeline=pipe)
        pipe.persist(job.key)  # the queued-job TTL no longer applies, as in RQ's own worker
        pipe.lrem(self.queue.intermediate_queue_key, 1, job.id)
        return execution

    def _attempt(self, job: Job) -> int:
        retries_left = job.retries_left or 0
        return max(1, self.settings.max_attempts - retries_left)

    def idle(self) -> None:
        with self.connection.pipeline() as pipe:
            self.worker.set_state(WorkerStatus.IDLE, pipeline=pipe)
            self.worker.heartbeat(self.claim_ttl_s, pipeline=pipe)  # hset alone would drop TTL
            pipe.execute()

    # --- running ----------------------------------------------------------------------------

    def process(self, claims: list[Claim], model: PairModel) -> None:
        """Run claims as one model batch. If the batch raises (not an image problem: a bug or a
        resource error), run each claim alone so one poison pair cannot fail the others; a
        claim that still raises is retried by RQ or, out of attempts, fails PROCESSING_ERROR."""
        try:
            outcomes = model.run([c.pair for c in claims])
        except Exception:  # noqa: BLE001 - the worker must outlive any model error
            exc_string = traceback.format_exc()
            log.exception("batch of %d failed", len(claims))
            self.metrics.batch_errors.inc()
            if len(claims) == 1:
                self.fail(claims[0], exc_string)
            else:
                for claim in claims:
                    self.process([claim], model)
            return
        self.metrics.observe_batch(
            outcomes, [max(0.0, c.pair.claimed_at - c.pair.payload.enqueued_at) for c in claims]
        )
        for claim, outcome in zip(claims, outcomes, strict=True):
            self.finish(claim, outcome)

    # --- ending -----------------------------------------------------------------------------

    def finish(self, claim: Claim, outcome: Outcome) -> None:
        """Store the Outcome, end the RQ job (see the module docstring), drop the images,
        then publish: a subscriber woken by the PUBLISH finds the result and the status."""
        job = claim.job
        self._release(claim)
        status = job.get_status(refresh=True)
        if status == JobStatus.CANCELED:
            outcome = failure_outcome(
                job.id, claim.pair.payload, Failure("CANCELLED", "", "the job was cancelled")
            )
        # A job re-run after its worker was presumed dead may find the first answer stored
        # (and the images deleted): that answer stands.
        outcome = self._store(job.id, outcome)
        job.ended_at = now()
        reason = outcome.failure.reason if outcome.failure is not None else ""
        if status == JobStatus.CANCELED:
            with self.connection.pipeline() as pipe:
                self.worker.cleanup_execution(job, pipeline=pipe, execution=claim.execution)
                pipe.execute()
        elif reason in ("CANCELLED", "PROCESSING_ERROR"):
            job.retries_left = 0  # the images are gone: another attempt cannot succeed
            self.worker.handle_job_failure(
                job, self.queue, exc_string=outcome.failure.message, execution=claim.execution
            )
        else:
            job._result = asdict(outcome)
            self.worker.handle_job_success(
                job, self.queue, self.queue.started_job_registry, claim.execution
            )
        self.connection.publish(DONE_CHANNEL, job.id)
        self.metrics.observe_end(outcome)

    def fail(self, claim: Claim, exc_string: str) -> None:
        """An unexpected error: RQ re-queues the job if it has retries left; otherwise the
        caller gets a PROCESSING_ERROR Outcome rather than silence."""
        job = claim.job
        self._release(claim)
        job.ended_at = now()
        if job.should_retry:
            log.warning("job %s failed on attempt %d; retrying", job.id, self._attempt(job))
            self.metrics.retries.inc()
            self.worker.handle_job_failure(
                job, self.queue, exc_string=exc_string, execution=claim.execution
            )
            return
        message = f"processing failed after {self._attempt(job)} attempt(s)"
        outcome = self._store(
            job.id,
            failure_outcome(job.id, claim.pair.payload, Failure("PROCESSING_ERROR", "", message)),
        )
        self.worker.handle_job_failure(
            job, self.queue, exc_string=exc_string, execution=claim.execution
        )
        self.connection.publish(DONE_CHANNEL, job.id)
        self.metrics.observe_end(outcome)

    def _release(self, claim: Claim) -> None:
        self.release([claim])

    def release_all(self) -> None:
        """Between batches nothing is held; after a failed batch this lets its claims expire."""
        with self.lock:
            self.held.clear()

    def release(self, claims: list[Claim]) -> None:
        """Stop heartbeating these claims: finished ones, or ones a failure left behind (their
        registry entries then expire and the reaper re-queues them)."""
        with self.lock:
            for claim in claims:
                self.held.pop(claim.job.id, None)

    def _store(self, job_id: str, outcome: Outcome) -> Outcome:
        return store_outcome(self.connection, job_id, outcome, self.settings.result_ttl_s)


def store_outcome(connection: redis.Redis, job_id: str, outcome: Outcome, ttl_s: int) -> Outcome:
    """Write the Outcome and delete the job's images; returns the Outcome now stored.

    First writer wins: a job re-run after its worker was presumed dead must not replace an
    answer already given, so the stored one is returned when there was one.
    """
    key = result_key(job_id)
    with connection.pipeline() as pipe:
        pipe.set(key, outcome.to_json(), ex=ttl_s, nx=True)
        pipe.get(key)
        pipe.delete(*(image_key(job_id, side) for side in IMAGE_SIDES))
        written, stored, _ = pipe.execute()
    if written or stored is None:
        return outcome
    return Outcome.from_json(stored)

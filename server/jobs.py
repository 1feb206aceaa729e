"""The server's side of the RQ job queue: submit a pair, inspect a job, discard a job.

RQ is synchronous, so every call runs in this module's small thread pool; the event loop only
awaits. The job flow (image keys first, then the RQ job; JSON, never pickle) is the one
worker/contract.py documents.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Literal

import redis
from rq import Queue, Retry
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from server.errors import JobNotFound
from server.validation import PairRequest
from siamatch.settings import Settings
from worker.contract import (
    IMAGE_SIDES,
    JOB_FUNCTION,
    QUEUE_NAME,
    Failure,
    JobPayload,
    Outcome,
    image_key,
    new_job_id,
    result_key,
)

JobState = Literal["QUEUED", "RUNNING", "DONE", "FAILED"]

# RQ statuses of a job that has not ended: a worker may still run it, so a caller that gives
# up must cancel it.
_PENDING = {
    JobStatus.CREATED,
    JobStatus.QUEUED,
    JobStatus.DEFERRED,
    JobStatus.SCHEDULED,
    JobStatus.STARTED,
}
_RUNNING = {JobStatus.STARTED}
# Redis calls answer in milliseconds; a dead Redis must fail a call fast (UNAVAILABLE), not
# hang it until the caller's deadline.
CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 5.0
THREADS = 8


@dataclass(frozen=True)
class JobView:
    """What GetVerifyResult reports: the state and, once the job ended, its outcome."""

    job_id: str
    state: JobState
    client_request_id: str = ""
    outcome: Outcome | None = None


def connect(url: str) -> redis.Redis:
    """A synchronous Redis client with short timeouts (bytes in and out, as RQ requires)."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=SOCKET_TIMEOUT_S
    )


class JobQueue:
    """Submits, inspects and discards verification jobs; async methods over sync RQ."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.connection = connect(settings.effective_redis_url)
        self.queue = Queue(QUEUE_NAME, connection=self.connection, serializer=JSONSerializer)
        self._executor = ThreadPoolExecutor(THREADS, thread_name_prefix="rq")

    async def submit(self, pair: PairRequest, job_id: str | None = None) -> str:
        """Write the image keys, then enqueue the RQ job; returns the job id."""
        return await self._run(self._submit, pair, job_id or new_job_id())

    async def inspect(self, job_id: str) -> JobView:
        return await self._run(self._inspect, job_id)

    async def discard(self, job_id: str) -> None:
        """Cancel a job nobody waits for any more and delete its image bytes at once."""
        await self._run(self._discard, job_id)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.connection.close()

    async def _run(self, fn, *args):  # noqa: ANN001, ANN202 - thin executor hop
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _submit(self, pair: PairRequest, job_id: str) -> str:
        """Images and job in ONE transaction: a worker never sees a job without its images, no
        image key outlives a failed enqueue, and it costs one round trip instead of two."""
        settings = self.settings
        payload = JobPayload(
            threshold=pair.threshold,
            client_request_id=pair.client_request_id,
            enqueued_at=time.time(),
        )
        with self.connection.pipeline() as pipe:
            pipe.multi()  # RQ's enqueue wants a MULTI before any command
            for side in IMAGE_SIDES:
                pipe.set(image_key(job_id, side), pair.images[side], ex=settings.job_ttl_s)
            self.queue.enqueue_call(
                JOB_FUNCTION,
                kwargs=asdict(payload),
                job_id=job_id,
                # Retry(max=0) is refused by RQ: one attempt means no Retry at all.
                retry=Retry(max=settings.max_attempts - 1) if settings.max_attempts > 1 else None,
                result_ttl=settings.result_ttl_s,
                failure_ttl=settings.result_ttl_s,
                ttl=settings.job_ttl_s,
                pipeline=pipe,
            )
            pipe.execute()
        return job_id

    def _inspect(self, job_id: str) -> JobView:
        raw = self.connection.get(result_key(job_id))
        if raw is not None:
            outcome = Outcome.from_json(raw)
            state: JobState = "DONE" if outcome.ok else "FAILED"
            return JobView(job_id, state, outcome.client_request_id, outcome)
        try:
            job = Job.fetch(job_id, connection=self.connection, serializer=JSONSerializer)
            status = job.get_status()
        except NoSuchJobError:
            raise JobNotFound(f"job {job_id!r} is unknown or its result has expired") from None
        request_id = str((job.kwargs or {}).get("client_request_id", ""))
        if status in _RUNNING:
            return JobView(job_id, "RUNNING", request_id)
        if status in _PENDING:
            return JobView(job_id, "QUEUED", request_id)
        return JobView(job_id, "FAILED", request_id, ended_without_result(job, status))

    def _discard(self, job_id: str) -> None:
        self._delete_images(job_id)
        try:
            job = Job.fetch(job_id, connection=self.connection, serializer=JSONSerializer)
            if job.get_status() in _PENDING:
                job.cancel()
        except (NoSuchJobError, InvalidJobOperation):
            pass  # already gone or already cancelled: nothing left to stop

    def _delete_images(self, job_id: str) -> None:
        self.connection.delete(*(image_key(job_id, side) for side in IMAGE_SIDES))


def ended_without_result(job: Job, status: JobStatus) -> Outcome:
    """The outcome of a job that ended in RQ but left no result (cancelled, expired, crashed)."""
    request_id = str((job.kwargs or {}).get("client_request_id", ""))
    if status in (JobStatus.CANCELED, JobStatus.STOPPED):
        failure = Failure("CANCELLED", message="the job was cancelled before a worker finished it")
    else:
        last = (job.exc_info or "").strip().splitlines()[-1:] or [f"job {status.value}"]
        failure = Failure("PROCESSING_ERROR", message=last[0])
    return Outcome(job.id, request_id, failure=failure)

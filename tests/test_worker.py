"""The batching worker as a real process on real Redis, fed jobs exactly as the server feeds
them: pairs complete, one bad pair fails alone in its batch, a SIGKILLed worker's jobs are
finished by another, SIGTERM finishes the batch in hand and exits 0.

The model is untrained here: the tests check structure and completion, never score values.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
import redis
from PIL import Image
from rq.job import Job, JobStatus, Retry
from rq.queue import Queue
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from siamatch.settings import Settings
from worker.contract import (
    DONE_CHANNEL,
    IMAGE_SIDES,
    JOB_FUNCTION,
    QUEUE_NAME,
    JobPayload,
    Outcome,
    image_key,
    new_job_id,
    result_key,
)
from worker.heartbeat import live_workers

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = Settings()
WORKER_START_S = 120.0  # import torch + load the model on a busy 2-core machine
RESULT_S = 60.0
# A short heartbeat: a dead worker's claims expire after max(2 s, 3 periods).
FAST_HEARTBEAT = ("--heartbeat-s", "0.5")


# --- what the server does, and what a caller does ----------------------------------------------


def enqueue_pair(
    connection: redis.Redis,
    selfie: bytes | None,
    id_document: bytes | None,
    *,
    threshold: float | None = None,
    client_request_id: str = "",
    pipeline: redis.client.Pipeline | None = None,
    max_attempts: int = SETTINGS.max_attempts,
) -> str:
    """Images beside the job (EX job_ttl_s), then an RQ job with JSON kwargs, as the server
    does. A None image is not written (a job whose images are gone). With `pipeline`, the
    caller executes it: several jobs then land in the queue at once."""
    job_id = new_job_id()
    pipe = pipeline if pipeline is not None else connection.pipeline()
    if not pipe.explicit_transaction:  # RQ's enqueue wants a MULTI before any command
        pipe.multi()
    for side, data in zip(IMAGE_SIDES, (selfie, id_document), strict=True):
        if data is not None:
            pipe.set(image_key(job_id, side), data, ex=SETTINGS.job_ttl_s)
    payload = JobPayload(threshold, client_request_id, time.time())
    Queue(QUEUE_NAME, connection=connection, serializer=JSONSerializer).enqueue_call(
        JOB_FUNCTION,
        kwargs=asdict(payload),
        job_id=job_id,
        retry=Retry(max=max_attempts - 1) if max_attempts > 1 else None,
        result_ttl=SETTINGS.result_ttl_s,
        failure_ttl=SETTINGS.result_ttl_s,
        ttl=SETTINGS.job_ttl_s,
        pipeline=pipe,
    )
    if pipeline is None:
        pipe.execute()
    return job_id


def wait_outcome(connection: redis.Redis, job_id: str, timeout_s: float = RESULT_S) -> Outcome:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        raw = connection.get(result_key(job_id))
        if raw is not None:
            return Outcome.from_json(raw)
        time.sleep(0.05)
    raise AssertionError(f"no result for job {job_id} within {timeout_s} s")


def rq_job(connection: redis.Redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)


def ended_job(connection: redis.Redis, job_id: str, timeout_s: float = 5.0) -> Job:
    """The RQ job once its status has left STARTED: the worker stores the Outcome first and
    ends the RQ job a moment later (before it PUBLISHes), so a poller of the result key can
    see the Outcome while RQ still says started."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = rq_job(connection, job_id)
        if job.get_status() not in (JobStatus.QUEUED, JobStatus.STARTED):
            return job
        if time.monotonic() > deadline:
            return job
        time.sleep(0.02)


def flat_png() -> bytes:
    """A valid image with no face in it."""
    buffer = io.BytesIO()
    Image.new("RGB", (240, 240), (120, 160, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


# --- real worker processes ---------------------------------------------------------------------


class WorkerProcess:
    def __init__(self, redis_url: str, log_path: Path, *flags: str) -> None:
        self.log_path = log_path
        env = {**os.environ, "SIAMATCH_TORCH_THREADS": "1", "SIAMATCH_DEVICE": "cpu"}
        self.log_file = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker.main", "--redis-url", redis_url, *flags],
            cwd=ROOT,
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, connection: redis.Redis, known: set[str]) -> str:
        """The new worker's name, once it is registered (it registers after loading)."""
        deadline = time.monotonic() + WORKER_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            fresh = set(live_workers(connection)) - known
            if fresh:
                return fresh.pop()
            time.sleep(0.1)
        raise AssertionError(f"worker not ready within {WORKER_START_S} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.log_file.close()


@pytest.fixture
def spawn(redis_url: str, tmp_path: Path) -> Iterator:
    started: list[WorkerProcess] = []

    def start(*flags: str) -> WorkerProcess:
        worker = WorkerProcess(redis_url, tmp_path / f"worker{len(started)}.log", *flags)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


# --- one worker serving several tests ------------------------------------------------------------


@pytest.fixture(scope="class")
def conn(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    """One worker for the whole class, on a database emptied once (not per test: that would
    wipe the worker's registration)."""
    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    worker = WorkerProcess(redis_url, tmp_path_factory.mktemp("worker") / "worker.log")
    try:
        worker.wait_ready(connection, set())
        yield connection
    finally:
        worker.stop()
        connection.close()


class TestServing:
    def test_pairs_complete_with_results(
        self, conn: redis.Redis, same_person_pair, different_person_pair
    ):
        pubsub = conn.pubsub()
        pubsub.subscribe(DONE_CHANNEL)
        same = enqueue_pair(conn, *same_person_pair, client_request_id="req-same")
        different = enqueue_pair(conn, *different_person_pair, threshold=0.0)

        outcomes = {job_id: wait_outcome(conn, job_id) for job_id in (same, different)}

        for job_id, outcome in outcomes.items():
            assert outcome.job_id == job_id and outcome.ok and outcome.failure is None
            result = outcome.result
            assert 0.0 <= result.score <= 1.0
            assert result.match == (result.score >= result.threshold)
            assert result.model_version
            for face in (result.selfie_face, result.id_document_face):
                assert len(face.box) == 4 and face.box[2] > 0 and face.box[3] > 0
                assert 0.0 < face.confidence <= 1.0 and face.faces_found >= 1
            assert result.timings.batch_size >= 1 and result.timings.inference_ms > 0
            assert result.timings.preprocess_ms > 0 and result.timings.queue_wait_ms >= 0
            # The job ended: its images are gone, RQ says finished and holds the same Outcome.
            assert conn.exists(*(image_key(job_id, side) for side in IMAGE_SIDES)) == 0
            job = ended_job(conn, job_id)
            assert job.get_status() == JobStatus.FINISHED
            assert job.return_value() == json.loads(outcome.to_json())
        assert outcomes[same].client_request_id == "req-same"
        assert outcomes[different].result.threshold == 0.0 and outcomes[different].result.match
        assert 0 < conn.ttl(result_key(same)) <= SETTINGS.result_ttl_s

        published = set()
        deadline = time.monotonic() + 5
        while len(published) < 2 and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message and message["type"] == "message":
                published.add(message["data"].decode())
        pubsub.close()
        assert published == {same, different}

    def test_job_hash_is_json_not_pickle(self, conn: redis.Redis, same_person_pair):
        job_id = enqueue_pair(conn, *same_person_pair, client_request_id="json")
        wait_outcome(conn, job_id)
        raw = conn.hget(Job.key_for(job_id), "data")
        func, instance, args, kwargs = json.loads(zlib.decompress(raw))
        assert func == JOB_FUNCTION and instance is None and args == []
        assert kwargs["client_request_id"] == "json" and kwargs["threshold"] is None

    def test_bad_pair_fails_alone_in_its_batch(self, conn: redis.Redis, same_person_pair):
        selfie, id_document = same_person_pair
        with conn.pipeline() as pipe:  # all land at once, so one batch can take them all
            good = [enqueue_pair(conn, selfie, id_document, pipeline=pipe) for _ in range(3)]
            no_face = enqueue_pair(conn, flat_png(), id_document, pipeline=pipe)
            gone = enqueue_pair(conn, None, None, pipeline=pipe)
            pipe.execute()

        for job_id in good:
            outcome = wait_outcome(conn, job_id)
            assert outcome.ok
            # Scored in one forward pass: the batch of 5 less the two that failed.
            assert outcome.result.timings.batch_size == 3
        failed = wait_outcome(conn, no_face)
        assert failed.failure.reason == "NO_FACE" and failed.failure.image == "selfie"
        assert failed.result is None
        # A face-less photo is an answer, not a service failure (see worker/batcher.py).
        assert ended_job(conn, no_face).get_status() == JobStatus.FINISHED
        cancelled = wait_outcome(conn, gone)
        assert cancelled.failure.reason == "CANCELLED"
        assert ended_job(conn, gone).get_status() == JobStatus.FAILED
        assert conn.exists(*(image_key(no_face, side) for side in IMAGE_SIDES)) == 0


# --- crashes and stops ---------------------------------------------------------------------------


def test_sigkilled_workers_jobs_are_finished_by_another(
    redis_conn: redis.Redis, spawn, same_person_pair
):
    victim = spawn(*FAST_HEARTBEAT, "--max-batch-size", "2")
    victim_name = victim.wait_ready(redis_conn, set())
    job_ids = [enqueue_pair(redis_conn, *same_person_pair) for _ in range(6)]

    started = StartedJobRegistry(QUEUE_NAME, connection=redis_conn, serializer=JSONSerializer)
    deadline = time.monotonic() + RESULT_S
    held: list[str] = []
    while not held and time.monotonic() < deadline:
        held = started.get_job_ids(cleanup=False)
        time.sleep(0.005)
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(timeout=10)
    killed_at = time.monotonic()
    assert held, "the victim never claimed a job"
    assert all(redis_conn.get(result_key(job_id)) is None for job_id in held)

    rescuer = spawn(*FAST_HEARTBEAT)
    rescuer_name = rescuer.wait_ready(redis_conn, {victim_name})
    outcomes = {job_id: wait_outcome(redis_conn, job_id) for job_id in job_ids}

    assert all(outcome.ok for outcome in outcomes.values())
    for job_id in held:  # retried by RQ's registry cleanup, run to the end by the rescuer
        job = rq_job(redis_conn, job_id)
        assert job.get_status() == JobStatus.FINISHED
        assert job.worker_name == rescuer_name
        assert job.retries_left == SETTINGS.max_attempts - 2
    assert time.monotonic() - killed_at < 60  # generous: includes the rescuer's model load
    assert victim_name not in live_workers(redis_conn)


def test_sigterm_finishes_the_batch_then_exits_zero(
    redis_conn: redis.Redis, spawn, same_person_pair
):
    worker = spawn("--max-batch-wait-ms", "200")
    worker.wait_ready(redis_conn, set())
    job_ids = [enqueue_pair(redis_conn, *same_person_pair) for _ in range(3)]
    started = StartedJobRegistry(QUEUE_NAME, connection=redis_conn, serializer=JSONSerializer)
    deadline = time.monotonic() + RESULT_S
    while not started.get_job_ids(cleanup=False) and time.monotonic() < deadline:
        time.sleep(0.005)
    worker.proc.send_signal(signal.SIGTERM)

    assert worker.proc.wait(timeout=RESULT_S) == 0, worker.log()
    claimed = [job_id for job_id in job_ids if redis_conn.exists(result_key(job_id))]
    assert claimed, "the batch in hand was dropped"
    for job_id in job_ids:  # finished, or never claimed and still queued for the next worker
        status = rq_job(redis_conn, job_id).get_status()
        assert status == (JobStatus.FINISHED if job_id in claimed else JobStatus.QUEUED)
    assert live_workers(redis_conn) == []

"""worker/batcher.py and worker/heartbeat.py in-process on real Redis and real RQ, with a
stand-in model (no torch): claiming exactly once, batch limits, retry-then-PROCESSING_ERROR
after a model error, and the reaper's handling of dead workers' claims."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.serializers import JSONSerializer

from siamatch.settings import Settings
from tests.test_worker import enqueue_pair
from worker.batcher import Batcher, new_worker
from worker.contract import DONE_CHANNEL, JOB_FUNCTION, QUEUE_NAME, Failure, Outcome, result_key
from worker.heartbeat import reap
from worker.pairs import Pair, failure_outcome

IMAGES = (b"selfie bytes", b"id bytes")  # never decoded: the stand-in model does not look


class StandInModel:
    """Answers every pair (NO_FACE: an Outcome needing no scores) unless told to raise for a
    job; counts the batches it saw."""

    def __init__(self, poison: set[str] | None = None) -> None:
        self.poison = poison or set()
        self.batches: list[list[str]] = []

    def run(self, pairs: list[Pair]) -> list[Outcome]:
        self.batches.append([p.job_id for p in pairs])
        if any(p.job_id in self.poison for p in pairs):
            raise RuntimeError("model exploded")
        return [
            failure_outcome(p.job_id, p.payload, Failure("NO_FACE", "selfie", "stand-in"))
            for p in pairs
        ]


def batcher_for(connection: redis.Redis, **settings) -> Batcher:
    worker = new_worker(connection)
    worker.register_birth()
    return Batcher(worker, Settings(**settings))


def status(connection: redis.Redis, job_id: str) -> JobStatus:
    return Job.fetch(job_id, connection=connection, serializer=JSONSerializer).get_status()


def test_each_job_is_claimed_once_across_concurrent_workers(redis_url: str, redis_conn):
    job_ids = {enqueue_pair(redis_conn, *IMAGES) for _ in range(30)}
    claimed: list[list[str]] = [[], [], []]

    def drain(index: int) -> None:
        connection = redis.Redis.from_url(redis_url)
        batcher = batcher_for(connection, max_batch_size=4)
        while claims := batcher.claim(block_s=0.2):
            claimed[index] += [c.job.id for c in claims]
        connection.close()

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    everything = [job_id for ids in claimed for job_id in ids]
    assert sorted(everything) == sorted(job_ids)  # all of them, none twice
    assert all(status(redis_conn, job_id) == JobStatus.STARTED for job_id in job_ids)


def test_claim_fills_up_to_the_batch_size(redis_conn):
    job_ids = [enqueue_pair(redis_conn, *IMAGES, client_request_id=str(i)) for i in range(6)]
    batcher = batcher_for(redis_conn, max_batch_size=4, max_batch_wait_ms=20)

    first, second = batcher.claim(block_s=1), batcher.claim(block_s=1)

    assert [c.job.id for c in first + second] == job_ids  # FIFO
    assert (len(first), len(second)) == (4, 2)
    assert first[0].pair.selfie == IMAGES[0] and first[0].pair.payload.client_request_id == "0"
    assert batcher.claim(block_s=0.1) == []


def test_a_job_arriving_within_the_fill_window_joins_the_batch(redis_conn):
    """The window is polled (a Redis BLMOVE with a millisecond timeout returns on Redis's
    100 ms tick instead), so a job pushed a few ms after the first still rides along."""
    first = enqueue_pair(redis_conn, *IMAGES)
    late: list[str] = []
    pusher = threading.Timer(0.02, lambda: late.append(enqueue_pair(redis_conn, *IMAGES)))
    batcher = batcher_for(redis_conn, max_batch_size=4, max_batch_wait_ms=500)
    pusher.start()
    claims = batcher.claim(block_s=1)
    pusher.join()
    assert [c.job.id for c in claims] == [first, *late]


def test_after_a_lone_pair_a_lone_job_runs_without_waiting_the_window(redis_conn):
    """Sparse traffic (one caller): no fill wait. A burst (ids queued together) waits again."""
    batcher = batcher_for(redis_conn, max_batch_size=4, max_batch_wait_ms=500)
    first = enqueue_pair(redis_conn, *IMAGES)
    assert [c.job.id for c in batcher.claim(block_s=1)] == [first]  # waited its 500 ms
    second = enqueue_pair(redis_conn, *IMAGES)
    started = time.monotonic()
    assert [c.job.id for c in batcher.claim(block_s=1)] == [second]
    assert time.monotonic() - started < 0.25  # did not sit out the 500 ms window
    burst = [enqueue_pair(redis_conn, *IMAGES) for _ in range(2)]
    assert [c.job.id for c in batcher.claim(block_s=1)] == burst
    third = enqueue_pair(redis_conn, *IMAGES)
    late: list[str] = []
    pusher = threading.Timer(0.05, lambda: late.append(enqueue_pair(redis_conn, *IMAGES)))
    pusher.start()
    claims = batcher.claim(block_s=1)  # after a batch of two, the window is open again
    pusher.join()
    assert [c.job.id for c in claims] == [third, *late]


def test_no_fill_wait_takes_only_what_is_queued(redis_conn):
    job_ids = [enqueue_pair(redis_conn, *IMAGES) for _ in range(3)]
    batcher = batcher_for(redis_conn, max_batch_size=8, max_batch_wait_ms=0)
    assert [c.job.id for c in batcher.claim(block_s=1)] == job_ids


def test_model_error_retries_singly_then_fails_processing_error(redis_conn):
    good = enqueue_pair(redis_conn, *IMAGES)
    poison = enqueue_pair(redis_conn, *IMAGES, max_attempts=2)
    batcher = batcher_for(redis_conn)
    model = StandInModel(poison={poison})
    pubsub = redis_conn.pubsub()
    pubsub.subscribe(DONE_CHANNEL)

    batcher.process(batcher.claim(block_s=1), model)

    assert model.batches == [[good, poison], [good], [poison]]  # the batch, then one by one
    assert Outcome.from_json(redis_conn.get(result_key(good))).failure.reason == "NO_FACE"
    assert status(redis_conn, poison) == JobStatus.QUEUED  # RQ re-queued it: attempt 2 of 2
    assert redis_conn.get(result_key(poison)) is None

    batcher.process(batcher.claim(block_s=1), model)

    outcome = Outcome.from_json(redis_conn.get(result_key(poison)))
    assert outcome.failure.reason == "PROCESSING_ERROR"
    assert status(redis_conn, poison) == JobStatus.FAILED
    assert not batcher.held
    published = [
        m["data"].decode()
        for m in iter(lambda: pubsub.get_message(timeout=0.2), None)
        if m["type"] == "message"
    ]
    pubsub.close()
    assert published == [good, poison]


def test_reaper_requeues_a_dead_workers_claims_or_fails_them_when_out_of_attempts(redis_conn):
    settings = {"heartbeat_s": 0.5}  # claims live max(2 s, 3 periods) = 2 s
    retried = enqueue_pair(redis_conn, *IMAGES)
    last_try = enqueue_pair(redis_conn, *IMAGES, max_attempts=1)
    dead = batcher_for(redis_conn, **settings)
    claims = dead.claim(block_s=1)
    assert len(claims) == 2
    dead.release(claims)  # what a SIGKILL does: nobody heartbeats these claims any more

    time.sleep(dead.claim_ttl_s + 1.1)  # the registry scores whole seconds
    reap(dead.queue, Settings(**settings))

    assert status(redis_conn, retried) == JobStatus.QUEUED
    assert Job.fetch(retried, redis_conn, serializer=JSONSerializer).retries_left == 1
    outcome = Outcome.from_json(redis_conn.get(result_key(last_try)))
    assert outcome.failure.reason == "PROCESSING_ERROR"
    assert status(redis_conn, last_try) == JobStatus.FAILED
    alive = batcher_for(redis_conn, **settings)
    assert [c.job.id for c in alive.claim(block_s=1)] == [retried]


def test_reaper_requeues_ids_popped_by_a_worker_that_died_before_claiming(redis_conn):
    job_id = enqueue_pair(redis_conn, *IMAGES)
    batcher = batcher_for(redis_conn, heartbeat_s=0.2)
    queue = batcher.queue
    redis_conn.lmove(queue.key, queue.intermediate_queue_key)  # popped, then the worker died
    settings = Settings(heartbeat_s=0.2)

    reap(queue, settings)  # first sighting: a live worker may be between pop and claim
    assert queue.get_job_ids() == []
    time.sleep(0.8)
    reap(queue, settings)

    assert queue.get_job_ids() == [job_id]
    assert [c.job.id for c in batcher.claim(block_s=1)] == [job_id]


@pytest.fixture(autouse=True)
def _bounded():
    """Everything here is in-process and quick; a hang is a bug."""
    started = time.monotonic()
    yield
    assert time.monotonic() - started < 60


def test_a_pickled_job_is_failed_unread(redis_conn):
    """Only JSON jobs run: a pickle (code execution if loaded) fails without being loaded."""
    job = Queue(QUEUE_NAME, connection=redis_conn).enqueue_call(  # RQ's default: pickle
        JOB_FUNCTION, kwargs={"threshold": None}
    )
    batcher = batcher_for(redis_conn)

    assert batcher.claim(block_s=1) == []

    outcome = Outcome.from_json(redis_conn.get(result_key(job.id)))
    assert outcome.failure.reason == "PROCESSING_ERROR"
    assert status(redis_conn, job.id) == JobStatus.FAILED
    assert not batcher.held

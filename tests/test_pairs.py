"""worker/pairs.py in-process: a batch of pairs → one Outcome each, bad pairs failing alone;
and the contract's JOB_FUNCTION run by RQ's stock SimpleWorker, one job at a time."""

from __future__ import annotations

import io
import json
import signal
import time

import pytest
import redis
from PIL import Image
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker

from siamatch.settings import Settings
from tests.test_worker import enqueue_pair
from worker.contract import IMAGE_SIDES, QUEUE_NAME, JobPayload, Outcome, image_key, result_key
from worker.pairs import Pair, PairModel, payload_of


@pytest.fixture(scope="module")
def model() -> PairModel:
    import torch

    torch.set_num_threads(1)
    return PairModel.load(Settings(device="cpu"))


def flat_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def pair(job_id: str, selfie: bytes | None, id_document: bytes | None, **payload) -> Pair:
    enqueued = time.time() - 0.25
    return Pair(
        job_id, JobPayload(enqueued_at=enqueued, **payload), selfie, id_document, time.time()
    )


def test_batch_scores_good_pairs_together_and_fails_bad_ones_alone(
    model: PairModel, same_person_pair, different_person_pair
):
    pairs = [
        pair("same", *same_person_pair, client_request_id="a"),
        pair("no-face", same_person_pair[0], flat_png()),
        pair("different", *different_person_pair, threshold=1.0),
        pair("garbage", b"this is not an image", same_person_pair[1]),
        pair("gone", None, same_person_pair[1]),
    ]
    outcomes = model.run(pairs)

    assert [o.job_id for o in outcomes] == [p.job_id for p in pairs]
    same, no_face, different, garbage, gone = outcomes
    assert same.ok and same.client_request_id == "a"
    assert same.result.threshold == model.loaded.threshold
    assert same.result.model_trained == model.loaded.trained
    assert different.result.threshold == 1.0
    assert different.result.match == (different.result.score >= 1.0)
    for scored in (same, different):
        timings = scored.result.timings
        assert timings.batch_size == 2
        assert timings.queue_wait_ms >= 250 and timings.inference_ms > 0
    assert (no_face.failure.reason, no_face.failure.image) == ("NO_FACE", "id_document")
    assert (garbage.failure.reason, garbage.failure.image) == ("UNDECODABLE_IMAGE", "selfie")
    assert gone.failure.reason == "CANCELLED"
    # Outcomes survive the JSON round trip the result key puts them through.
    assert Outcome.from_json(same.to_json()) == same


def test_payload_ignores_unknown_fields():
    assert payload_of({"threshold": 0.3, "from_a_newer_server": 1}) == JobPayload(threshold=0.3)


def test_stock_simple_worker_runs_the_job_function(
    redis_conn: redis.Redis, same_person_pair, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("SIAMATCH_DEVICE", "cpu")
    job_id = enqueue_pair(redis_conn, *same_person_pair)
    worker = SimpleWorker([QUEUE_NAME], connection=redis_conn, serializer=JSONSerializer)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert worker.work(burst=True)
    finally:  # RQ installs its own; give pytest back Ctrl+C
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    outcome = Outcome.from_json(redis_conn.get(result_key(job_id)))
    assert outcome.ok and outcome.result.timings.batch_size == 1
    job = Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == json.loads(outcome.to_json())
    assert redis_conn.exists(*(image_key(job_id, side) for side in IMAGE_SIDES)) == 0

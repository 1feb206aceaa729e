"""The gRPC server without workers: validation, status codes, health, reflection, deadlines.

A real grpc.aio server on a free loopback port and the session's real Redis; no worker runs
here, so every job stays queued unless the test itself plays the worker's part of the contract.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from rq.registry import CanceledJobRegistry

from protos.siamatch.v1 import face_verification_pb2 as pb
from server.app import SERVICE_NAME
from server.client import FaceVerificationClient
from tests.conftest import free_port, photo
from tests.service_harness import (
    ServerThread,
    image_keys,
    job_image_keys,
    queued_jobs,
    service_settings,
)
from worker.contract import (
    DONE_CHANNEL,
    QUEUE_NAME,
    FaceInfo,
    Failure,
    Outcome,
    Timings,
    Verification,
    new_job_id,
    result_key,
)

# Fixture photos are 7.8-9.9 kB: a 9,000-byte cap accepts the Bush/Powell ones and refuses
# Serena_Williams_0001.jpg (9,873 bytes) while the whole request still fits gRPC's limit.
MAX_IMAGE_BYTES = 9_000


@pytest.fixture(scope="module")
def server(redis_url: str) -> Iterator[ServerThread]:
    settings = service_settings(redis_url, max_image_bytes=MAX_IMAGE_BYTES, max_attempts=1)
    with ServerThread(settings) as running:
        yield running


@pytest.fixture
def client(server: ServerThread, redis_conn: redis.Redis) -> Iterator[FaceVerificationClient]:
    with FaceVerificationClient(server.address, timeout=10) as c:
        yield c


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height: a pixel bomb needs no pixels to be refused."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


GOOD = photo("George_W_Bush_0001.jpg")
JPEG = photo("Colin_Powell_0001.jpg")

INVALID_PAIRS = {
    "empty selfie": (b"", GOOD, "selfie", "empty"),
    "text id_document": (GOOD, b"hello, this is not an image\n" * 20, "id_document", "format"),
    "truncated jpeg": (JPEG[: len(JPEG) // 2], GOOD, "selfie", "truncated"),
    "oversized": (GOOD, photo("Serena_Williams_0001.jpg"), "id_document", "cap"),
    "pixel bomb": (png_header(100_000, 100_000), GOOD, "selfie", "pixels"),
    "too small": (GOOD, png_header(16, 16), "id_document", "smaller"),
}


@pytest.mark.parametrize("case", INVALID_PAIRS, ids=list(INVALID_PAIRS))
@pytest.mark.parametrize("rpc", ["verify", "submit"])
def test_invalid_images_are_refused_before_anything_is_enqueued(
    client: FaceVerificationClient, redis_conn: redis.Redis, case: str, rpc: str
) -> None:
    selfie, id_document, side, why = INVALID_PAIRS[case]
    with pytest.raises(grpc.RpcError) as caught:
        getattr(client, rpc)(selfie, id_document)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{side}:")
    assert why in caught.value.details()
    assert queued_jobs(redis_conn) == 0
    assert image_keys(redis_conn) == []


@pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan")])
def test_threshold_outside_unit_interval_is_invalid(
    client: FaceVerificationClient, redis_conn: redis.Redis, threshold: float
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.submit(GOOD, JPEG, threshold=threshold)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("threshold:")
    assert queued_jobs(redis_conn) == 0


@pytest.mark.parametrize("request_id", ["x" * 129, "line\nbreak", "esc\x1b[31m"])
def test_overlong_or_unprintable_client_request_id_is_invalid(
    client: FaceVerificationClient, redis_conn: redis.Redis, request_id: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.submit(GOOD, JPEG, client_request_id=request_id)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("client_request_id:")
    assert queued_jobs(redis_conn) == 0


def test_request_over_the_receive_limit_is_resource_exhausted(
    client: FaceVerificationClient, redis_conn: redis.Redis
) -> None:
    # 1.25 MB, far over 2 x 9,000 bytes + envelope: gRPC refuses it before our code runs.
    big = photo("id_card_td1_a_front.png")
    with pytest.raises(grpc.RpcError) as caught:
        client.submit(GOOD, big)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert queued_jobs(redis_conn) == 0


def test_an_image_at_the_byte_cap_passes_and_one_byte_more_is_refused(
    client: FaceVerificationClient, redis_conn: redis.Redis
) -> None:
    """Issue 4, kind 12: the limit is exact and the refusal names it."""
    at_cap = GOOD + b"\0" * (MAX_IMAGE_BYTES - len(GOOD))  # bytes after a JPEG's end are legal
    assert client.submit(at_cap, JPEG).job_id
    with pytest.raises(grpc.RpcError) as caught:
        client.submit(at_cap + b"\0", JPEG)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("selfie:") and "9,000" in caught.value.details()
    assert queued_jobs(redis_conn) == 1


def test_submit_queues_the_job_and_its_images(
    client: FaceVerificationClient, redis_conn: redis.Redis
) -> None:
    reply = client.submit(GOOD, JPEG, threshold=0.4, client_request_id="req-1")
    assert len(reply.job_id) >= 32 and reply.client_request_id == "req-1"
    assert queued_jobs(redis_conn) == 1
    assert job_image_keys(redis_conn, reply.job_id) == 2
    state = client.result(reply.job_id)
    assert state.state == pb.QUEUED
    assert state.client_request_id == "req-1"
    assert state.WhichOneof("outcome") is None


@pytest.mark.parametrize("job_id", ["A" * 32, "no such job!", "x" * 500])
def test_unknown_job_is_not_found(client: FaceVerificationClient, job_id: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.result(job_id)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


def test_empty_job_id_is_invalid(client: FaceVerificationClient) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.result("")
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_deadline_exceeded_cancels_the_job_and_deletes_its_images(
    client: FaceVerificationClient, redis_conn: redis.Redis
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.verify(GOOD, JPEG, timeout=1.0)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    # The server answers a margin before the deadline, after cancelling; allow the
    # cancellation of a caller-side expiry to land too.
    deadline = time.monotonic() + 5
    while queued_jobs(redis_conn) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queued_jobs(redis_conn) == 0
    assert image_keys(redis_conn) == []
    assert CanceledJobRegistry(QUEUE_NAME, connection=redis_conn).count == 1


def _play_worker(conn: redis.Redis, outcome_for: Callable[[str], Outcome]) -> threading.Thread:
    """Do what worker/ does once a job is queued: store its Outcome, then announce it."""

    def work() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            job_ids = conn.lrange(f"rq:queue:{QUEUE_NAME}", 0, -1)
            if job_ids:
                job_id = job_ids[0].decode()
                conn.set(result_key(job_id), outcome_for(job_id).to_json(), ex=60)
                conn.publish(DONE_CHANNEL, job_id)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_verify_wakes_on_the_done_announcement_and_translates_the_outcome(
    client: FaceVerificationClient, redis_conn: redis.Redis
) -> None:
    face = FaceInfo(box=[1.0, 2.0, 30.0, 40.0], confidence=0.9, faces_found=1)
    worker = _play_worker(
        redis_conn,
        lambda job_id: Outcome(
            job_id,
            "req-7",
            result=Verification(
                score=0.75,
                threshold=0.5,
                match=True,
                model_version="test-model",
                model_trained=False,
                selfie_face=face,
                id_document_face=face,
                timings=Timings(queue_wait_ms=1.0, batch_size=1),
            ),
        ),
    )
    reply = client.verify(GOOD, JPEG, client_request_id="req-7", timeout=10)
    worker.join()
    assert reply.WhichOneof("outcome") == "result"
    assert reply.client_request_id == "req-7"
    assert reply.result.score == pytest.approx(0.75)
    assert reply.result.match and not reply.result.model_trained
    assert reply.result.selfie_face.box.width == pytest.approx(30.0)
    assert reply.result.timings.batch_size == 1
    state = client.result(reply.job_id)
    assert state.state == pb.DONE and state.result.model_version == "test-model"


def test_a_failed_outcome_names_the_image(
    client: FaceVerificationClient, redis_conn: redis.Redis
) -> None:
    worker = _play_worker(
        redis_conn,
        lambda job_id: Outcome(job_id, failure=Failure("NO_FACE", "selfie", "no face found")),
    )
    reply = client.verify(GOOD, JPEG, timeout=10)
    worker.join()
    assert reply.WhichOneof("outcome") == "failure"
    assert reply.failure.reason == pb.NO_FACE and reply.failure.image == "selfie"
    assert client.result(reply.job_id).state == pb.FAILED


def test_health_is_serving(server: ServerThread) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_service(server: ServerThread) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {s.name for s in replies[0].list_services_response.service}
    assert SERVICE_NAME in names and "grpc.health.v1.Health" in names


def test_cli_result_of_an_unfinished_job_exits_4(
    server: ServerThread, client: FaceVerificationClient
) -> None:
    """Scripts can tell "not done yet" from "done" (no worker runs here: the job stays QUEUED)."""
    job_id = client.submit(GOOD, JPEG).job_id
    done = subprocess.run(
        [sys.executable, "-m", "siamatch.cli", "result", job_id, "--address", server.address],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 4 and "QUEUED" in done.stdout


def test_job_ids_never_look_like_a_command_line_option() -> None:
    """One URL-safe id in 64 used to start with "-", and `siamatch result -abc` then failed as
    an unknown option (CI hit it)."""
    ids = [new_job_id() for _ in range(5000)]
    assert not any(job_id.startswith("-") for job_id in ids)
    assert len(set(ids)) == len(ids) and all(len(job_id) == 32 for job_id in ids)


def test_health_is_not_serving_while_redis_is_unreachable() -> None:
    """Probes must stop routing traffic to a server whose every call would fail."""
    settings = service_settings(f"redis://127.0.0.1:{free_port()}/0")
    with ServerThread(settings) as down, FaceVerificationClient(down.address) as c:
        assert c.health(timeout=5) == "NOT_SERVING"
        assert c.health(SERVICE_NAME, timeout=5) == "NOT_SERVING"


def test_unreachable_redis_is_unavailable() -> None:
    settings = service_settings(f"redis://127.0.0.1:{free_port()}/0")
    with ServerThread(settings) as down, FaceVerificationClient(down.address) as c:
        for call in (
            lambda: c.verify(GOOD, JPEG, timeout=10),
            lambda: c.submit(GOOD, JPEG, timeout=10),
            lambda: c.result("A" * 32, timeout=10),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "Redis" in caught.value.details()

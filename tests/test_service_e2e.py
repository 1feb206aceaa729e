"""End to end: the real gRPC server, real Redis/RQ and a real worker process on real photos.

The model may be untrained (until a checkpoint ships), so these tests assert the structure of
results, never score values. The service uses its own Redis database so that the per-test
flushes of other tests cannot pull the queue from under its worker.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from PIL import Image, ImageDraw

from protos.siamatch.v1 import face_verification_pb2 as pb
from server.client import FaceVerificationClient
from tests.conftest import photo
from tests.service_harness import ROOT, ServerThread, running_workers, service_settings

# The worker loads the model on start; the first call waits for that (2 shared cores).
FIRST_CALL_TIMEOUT_S = 180.0
CALL_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def service(redis_url: str) -> Iterator[ServerThread]:
    url = redis_url.rsplit("/", 1)[0] + "/5"
    settings = service_settings(url, workers=1)
    with running_workers(settings, 1), ServerThread(settings) as server:
        with FaceVerificationClient(server.address) as client:  # wait for the worker
            client.verify(*_pair("George_W_Bush_0001.jpg", "George_W_Bush_0002.jpg"),
                          timeout=FIRST_CALL_TIMEOUT_S)  # fmt: skip
        yield server


@pytest.fixture
def client(service: ServerThread) -> Iterator[FaceVerificationClient]:
    with FaceVerificationClient(service.address, timeout=CALL_TIMEOUT_S) as c:
        yield c


def _pair(a: str, b: str) -> tuple[bytes, bytes]:
    return photo(a), photo(b)


def assert_verification(reply: pb.VerifyPairResponse | pb.GetVerifyResultResponse) -> None:
    assert reply.WhichOneof("outcome") == "result", reply
    result = reply.result
    assert 0.0 <= result.score <= 1.0
    assert 0.0 <= result.threshold <= 1.0
    assert result.match == (result.score >= result.threshold)
    assert result.model_version
    for face in (result.selfie_face, result.id_document_face):
        assert face.faces_found >= 1
        assert 0.0 < face.confidence <= 1.0
        assert face.box.width > 0 and face.box.height > 0
    assert result.timings.batch_size >= 1
    assert result.timings.inference_ms > 0


@pytest.mark.parametrize(
    "names",
    [
        ("George_W_Bush_0001.jpg", "George_W_Bush_0002.jpg"),
        ("Colin_Powell_0001.jpg", "Serena_Williams_0001.jpg"),
    ],
    ids=["same-person", "different-person"],
)
def test_verify_a_pair(client: FaceVerificationClient, names: tuple[str, str]) -> None:
    reply = client.verify(*_pair(*names), client_request_id="e2e")
    assert_verification(reply)
    assert reply.client_request_id == "e2e" and reply.job_id


def test_request_threshold_is_applied(client: FaceVerificationClient) -> None:
    reply = client.verify(*_pair("Colin_Powell_0001.jpg", "Colin_Powell_0002.jpg"), threshold=0.0)
    assert_verification(reply)
    assert reply.result.threshold == 0.0 and reply.result.match


def test_submit_then_poll_until_done(client: FaceVerificationClient) -> None:
    submitted = client.submit(
        *_pair("Tony_Blair_0001.jpg", "Colin_Powell_0002.jpg"), client_request_id="async-1"
    )
    assert submitted.client_request_id == "async-1"
    reply = client.wait_result(submitted.job_id, timeout=CALL_TIMEOUT_S)
    assert reply.state == pb.DONE
    assert reply.job_id == submitted.job_id and reply.client_request_id == "async-1"
    assert_verification(reply)


def faceless(name: str) -> bytes:
    """A real photo with its face painted over (LFW faces sit in the middle of the frame)."""
    img = Image.open(io.BytesIO(photo(name))).convert("RGB")
    ImageDraw.Draw(img).rectangle((30, 20, 220, 240), fill=(128, 128, 128))
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=90)
    return out.getvalue()


def test_photo_without_a_face_is_no_face_naming_the_image(client: FaceVerificationClient) -> None:
    reply = client.verify(photo("George_W_Bush_0001.jpg"), faceless("Tony_Blair_0001.jpg"))
    assert reply.WhichOneof("outcome") == "failure"
    assert reply.failure.reason == pb.NO_FACE
    assert reply.failure.image == "id_document"
    state = client.result(reply.job_id)
    assert state.state == pb.FAILED and state.failure.reason == pb.NO_FACE


def test_a_jpeg_cut_and_reclosed_is_undecodable_not_grey_filled(
    client: FaceVerificationClient,
) -> None:
    """The edge's structural check sees an end-of-image marker and lets it through; the worker's
    decoder hears libjpeg's "premature end" and refuses it, naming the image."""
    whole = photo("Tony_Blair_0001.jpg")
    reclosed = whole[: len(whole) // 2] + b"\xff\xd9"
    reply = client.verify(photo("George_W_Bush_0001.jpg"), reclosed)
    assert reply.WhichOneof("outcome") == "failure"
    assert reply.failure.reason == pb.UNDECODABLE_IMAGE
    assert reply.failure.image == "id_document"
    assert "truncated or corrupt" in reply.failure.message


def test_concurrent_calls_each_get_their_own_result(client: FaceVerificationClient) -> None:
    pairs = [
        ("George_W_Bush_0001.jpg", "George_W_Bush_0002.jpg"),
        ("Colin_Powell_0001.jpg", "Serena_Williams_0001.jpg"),
        ("Tony_Blair_0001.jpg", "Colin_Powell_0002.jpg"),
    ] * 2
    with ThreadPoolExecutor(len(pairs)) as pool:
        replies = list(
            pool.map(
                lambda item: client.verify(*_pair(*item[1]), client_request_id=str(item[0])),
                enumerate(pairs),
            )
        )
    for index, reply in enumerate(replies):
        assert_verification(reply)
        assert reply.client_request_id == str(index)
    assert len({r.job_id for r in replies}) == len(pairs)


def test_cli_verify_against_the_running_service(
    service: ServerThread, client: FaceVerificationClient
) -> None:
    selfie = ROOT / "tests/fixtures/George_W_Bush_0001.jpg"
    id_document = ROOT / "tests/fixtures/George_W_Bush_0002.jpg"
    done = subprocess.run(
        [sys.executable, "-m", "siamatch.cli", "verify", str(selfie), str(id_document),
         "--address", service.address, "--timeout", str(CALL_TIMEOUT_S)],
        capture_output=True, text=True, timeout=CALL_TIMEOUT_S + 30, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(None, 1) for line in done.stdout.splitlines() if " " in line)
    for field in ("job", "score", "threshold", "decision", "model", "faces", "timings"):
        assert field in lines, done.stdout
    assert lines["decision"] in ("MATCH", "NO MATCH")
    trained = client.verify(selfie.read_bytes(), id_document.read_bytes()).result.model_trained
    assert ("WARNING: the model is UNTRAINED" in done.stdout) == (not trained)


def test_cli_reports_the_status_of_a_refused_call(service: ServerThread) -> None:
    text = ROOT / "pyproject.toml"
    done = subprocess.run(
        [sys.executable, "-m", "siamatch.cli", "verify", str(text), str(text),
         "--address", service.address],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 1
    assert "INVALID_ARGUMENT" in done.stderr and "selfie" in done.stderr


def test_grpc_errors_keep_their_code(client: FaceVerificationClient) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.result("B" * 32)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND

"""The one translation from the worker's JSON outcome (worker.contract) to protobuf replies."""

from __future__ import annotations

from protos.siamatch.v1 import face_verification_pb2 as pb
from server.jobs import JobView
from worker.contract import FaceInfo, Outcome, Verification

STATES = {
    "QUEUED": pb.QUEUED,
    "RUNNING": pb.RUNNING,
    "DONE": pb.DONE,
    "FAILED": pb.FAILED,
}


def verify_reply(outcome: Outcome) -> pb.VerifyPairResponse:
    reply = pb.VerifyPairResponse(
        job_id=outcome.job_id, client_request_id=outcome.client_request_id
    )
    _fill_outcome(reply, outcome)
    return reply


def result_reply(view: JobView) -> pb.GetVerifyResultResponse:
    reply = pb.GetVerifyResultResponse(
        job_id=view.job_id, state=STATES[view.state], client_request_id=view.client_request_id
    )
    if view.outcome is not None:
        _fill_outcome(reply, view.outcome)
    return reply


def _fill_outcome(
    reply: pb.VerifyPairResponse | pb.GetVerifyResultResponse, outcome: Outcome
) -> None:
    if outcome.result is not None:
        reply.result.CopyFrom(_verification(outcome.result))
    elif outcome.failure is not None:
        failure = outcome.failure
        reply.failure.CopyFrom(
            pb.Failure(
                reason=_reason(failure.reason),
                image=failure.image,
                message=failure.message,
            )
        )


def _reason(reason: str) -> int:
    """A reason this proto version does not know reads as PROCESSING_ERROR, never a crash."""
    known = pb.FailureReason.keys()
    return pb.FailureReason.Value(reason if reason in known else "PROCESSING_ERROR")


def _verification(result: Verification) -> pb.VerificationResult:
    timings = result.timings
    return pb.VerificationResult(
        score=result.score,
        threshold=result.threshold,
        match=result.match,
        model_version=result.model_version,
        model_trained=result.model_trained,
        selfie_face=_face(result.selfie_face),
        id_document_face=_face(result.id_document_face),
        timings=pb.Timings(
            queue_wait_ms=timings.queue_wait_ms,
            preprocess_ms=timings.preprocess_ms,
            inference_ms=timings.inference_ms,
            batch_size=timings.batch_size,
        ),
    )


def _face(face: FaceInfo) -> pb.FaceDetection:
    x, y, width, height = face.box
    return pb.FaceDetection(
        box=pb.BoundingBox(x=x, y=y, width=width, height=height),
        confidence=face.confidence,
        faces_found=face.faces_found,
        rotation_degrees=face.rotation_degrees,
    )

"""What the server and the workers agree on: queue name, Redis keys, and the JSON job/result
schema. The server imports this module and nothing else from the worker.

Jobs are RQ jobs serialized with RQ's JSONSerializer (never pickle: a pickle in Redis is code
execution in every worker). The image bytes travel beside the job, in their own keys, so that
they can be deleted the moment the job ends while the job record and the result remain.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

QUEUE_NAME = "siamatch"
# The function an RQ job names. Our batching worker runs it in batches; a stock RQ
# SimpleWorker could run it one job at a time.
JOB_FUNCTION = "worker.pairs.verify_pair"
# Workers PUBLISH a finished job's id here; servers wait on one subscription, not by polling.
DONE_CHANNEL = "siamatch:done"
IMAGE_SIDES = ("selfie", "id_document")
CLIENT_REQUEST_ID_MAX = 128


def new_job_id() -> str:
    """192 random bits, URL-safe: unguessable, so a job id is its own read capability.

    Never starts with "-": `siamatch result -abc` would read the id as an option."""
    while (job_id := secrets.token_urlsafe(24)).startswith("-"):
        pass
    return job_id


def image_key(job_id: str, side: str) -> str:
    return f"siamatch:image:{job_id}:{side}"


def result_key(job_id: str) -> str:
    return f"siamatch:result:{job_id}"


@dataclass
class JobPayload:
    """The RQ job's kwargs (JSON)."""

    threshold: float | None = None
    client_request_id: str = ""
    enqueued_at: float = 0.0  # unix seconds, server clock


@dataclass
class FaceInfo:
    box: list[float]  # x, y, width, height
    confidence: float
    faces_found: int
    rotation_degrees: int = 0


@dataclass
class Timings:
    queue_wait_ms: float = 0.0
    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    batch_size: int = 0


@dataclass
class Verification:
    score: float
    threshold: float
    match: bool
    model_version: str
    model_trained: bool
    selfie_face: FaceInfo
    id_document_face: FaceInfo
    timings: Timings = field(default_factory=Timings)


FailureReason = Literal["NO_FACE", "UNDECODABLE_IMAGE", "PROCESSING_ERROR", "CANCELLED"]


@dataclass
class Failure:
    reason: FailureReason
    image: str = ""  # "selfie", "id_document", or "" when not about one image
    message: str = ""


@dataclass
class Outcome:
    """What a worker stores under result_key(job_id): exactly one of result / failure."""

    job_id: str
    client_request_id: str = ""
    result: Verification | None = None
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Outcome:
        data: dict[str, Any] = json.loads(raw)
        result = data.get("result")
        failure = data.get("failure")
        return cls(
            job_id=data["job_id"],
            client_request_id=data.get("client_request_id", ""),
            result=_verification(result) if result else None,
            failure=Failure(**failure) if failure else None,
        )


def _verification(data: dict[str, Any]) -> Verification:
    return Verification(
        score=data["score"],
        threshold=data["threshold"],
        match=data["match"],
        model_version=data["model_version"],
        model_trained=data["model_trained"],
        selfie_face=FaceInfo(**data["selfie_face"]),
        id_document_face=FaceInfo(**data["id_document_face"]),
        timings=Timings(**data.get("timings", {})),
    )

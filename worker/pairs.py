"""Image pairs → Outcomes: preprocess each pair, score the good ones as ONE model batch.

The batching worker (worker/batcher.py) calls `PairModel.run` on whatever it claimed; RQ's
stock SimpleWorker can call `verify_pair` (contract.JOB_FUNCTION) one job at a time. Both share
this code, so a pair gets the same answer whichever worker ran it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from model.checkpoint import LoadedModel, load_default_or
from model.decode import DecodeLimits
from model.errors import ImageError
from model.inference import PairScorer
from model.preprocess import AlignedFace, Preprocessor
from siamatch.settings import Settings
from worker.contract import (
    DONE_CHANNEL,
    IMAGE_SIDES,
    FaceInfo,
    Failure,
    JobPayload,
    Outcome,
    Timings,
    Verification,
    image_key,
    result_key,
)

log = logging.getLogger(__name__)


@dataclass
class Pair:
    """One job's input. An image is None when its key was gone: the job was cancelled or its
    images expired before a worker reached it."""

    job_id: str
    payload: JobPayload
    selfie: bytes | None
    id_document: bytes | None
    claimed_at: float = 0.0  # unix seconds; queue wait = claimed_at - payload.enqueued_at


class PairModel:
    """The model a worker loads once and keeps: checkpoint, scorer (device) and preprocessor."""

    def __init__(self, loaded: LoadedModel, scorer: PairScorer, preprocessor: Preprocessor):
        self.loaded = loaded
        self.scorer = scorer
        self.preprocessor = preprocessor

    @classmethod
    def load(cls, settings: Settings) -> PairModel:
        loaded = load_default_or(settings.checkpoint)
        preprocessor = Preprocessor(
            config=loaded.preprocess,
            limits=DecodeLimits.from_settings(settings),
            detector_score=settings.detector_score,
        )
        return cls(loaded, PairScorer(loaded, device=settings.device), preprocessor)

    def run(self, pairs: list[Pair]) -> list[Outcome]:
        """One Outcome per pair, in order.

        A pair whose image is missing, undecodable or faceless gets its own failure Outcome;
        the rest are scored together in one forward pass. Any other exception (a model or
        library bug) propagates: the caller decides whether to retry the pairs singly.
        """
        outcomes: list[Outcome | None] = [None] * len(pairs)
        ready: list[tuple[int, AlignedFace, AlignedFace, float]] = []
        for index, pair in enumerate(pairs):
            outcome_or_faces = self._prepare(pair)
            if isinstance(outcome_or_faces, Outcome):
                outcomes[index] = outcome_or_faces
            else:
                ready.append((index, *outcome_or_faces))

        if ready:
            started = time.perf_counter()
            scores = self.scorer.score([r[1].crop for r in ready], [r[2].crop for r in ready])
            inference_ms = (time.perf_counter() - started) * 1000.0
            for (index, selfie, id_document, preprocess_ms), score in zip(
                ready, scores, strict=True
            ):
                pair = pairs[index]
                timings = Timings(
                    queue_wait_ms=_queue_wait_ms(pair),
                    preprocess_ms=round(preprocess_ms, 3),
                    inference_ms=round(inference_ms, 3),
                    batch_size=len(ready),
                )
                outcomes[index] = self._verified(pair, float(score), selfie, id_document, timings)
        return [outcome for outcome in outcomes if outcome is not None]

    def _prepare(self, pair: Pair) -> Outcome | tuple[AlignedFace, AlignedFace, float]:
        images = dict(zip(IMAGE_SIDES, (pair.selfie, pair.id_document), strict=True))
        missing = [side for side, data in images.items() if data is None]
        if missing:
            return failure_outcome(
                pair.job_id,
                pair.payload,
                Failure("CANCELLED", "", "the job's images are gone: cancelled or expired"),
            )
        started = time.perf_counter()
        faces: list[AlignedFace] = []
        for side, data in images.items():
            try:
                faces.append(self.preprocessor.from_bytes(data, side))
            except ImageError as exc:
                return failure_outcome(
                    pair.job_id, pair.payload, Failure(exc.reason, exc.image, exc.message)
                )
        return faces[0], faces[1], (time.perf_counter() - started) * 1000.0

    def _verified(
        self,
        pair: Pair,
        score: float,
        selfie: AlignedFace,
        id_document: AlignedFace,
        timings: Timings,
    ) -> Outcome:
        threshold = pair.payload.threshold
        if threshold is None:
            threshold = self.loaded.threshold
        return Outcome(
            job_id=pair.job_id,
            client_request_id=pair.payload.client_request_id,
            result=Verification(
                score=score,
                threshold=float(threshold),
                match=score >= threshold,
                model_version=self.loaded.model_version,
                model_trained=self.loaded.trained,
                selfie_face=face_info(selfie),
                id_document_face=face_info(id_document),
                timings=timings,
            ),
        )


def face_info(face: AlignedFace) -> FaceInfo:
    detection = face.detection
    return FaceInfo(
        box=[float(v) for v in detection.box],
        confidence=float(detection.confidence),
        faces_found=int(detection.faces_found),
        rotation_degrees=int(detection.rotation_degrees),
    )


def failure_outcome(job_id: str, payload: JobPayload, failure: Failure) -> Outcome:
    return Outcome(job_id=job_id, client_request_id=payload.client_request_id, failure=failure)


def payload_of(kwargs: dict[str, Any]) -> JobPayload:
    """The RQ job's kwargs as a JobPayload; unknown keys (a newer server) are ignored."""
    known = {name: kwargs[name] for name in JobPayload.__dataclass_fields__ if name in kwargs}
    return JobPayload(**known)


def _queue_wait_ms(pair: Pair) -> float:
    if not pair.payload.enqueued_at or not pair.claimed_at:
        return 0.0
    return round(max(0.0, pair.claimed_at - pair.payload.enqueued_at) * 1000.0, 3)


# --- a stock RQ worker's entry point (contract.JOB_FUNCTION) --------------------------------

_single_job_model: PairModel | None = None


def verify_pair(**kwargs: Any) -> dict[str, Any]:
    """Run one job inside a stock `rq.SimpleWorker` (one pair per call, no batching).

    Loads the model on first use (never at import), writes the Outcome where the server reads
    it, deletes the images and publishes, like the batching worker. Returns the Outcome as a
    dict, which RQ stores as the job's (JSON) return value. Unexpected errors propagate so RQ's
    own retry applies.
    """
    from rq import get_current_job

    global _single_job_model
    job = get_current_job()
    if job is None:
        raise RuntimeError("verify_pair runs inside an RQ worker (no current job)")
    settings = Settings.from_env()
    if _single_job_model is None:
        _single_job_model = PairModel.load(settings)
    connection = job.connection
    keys = [image_key(job.id, side) for side in IMAGE_SIDES]
    selfie, id_document = connection.mget(keys)
    pair = Pair(job.id, payload_of(kwargs), selfie, id_document, claimed_at=time.time())
    outcome = _single_job_model.run([pair])[0]
    with connection.pipeline() as pipe:
        pipe.set(result_key(job.id), outcome.to_json(), ex=settings.result_ttl_s, nx=True)
        pipe.delete(*keys)
        pipe.publish(DONE_CHANNEL, job.id)
        pipe.execute()
    return asdict(outcome)

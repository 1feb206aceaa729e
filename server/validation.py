"""Request checks done before anything is enqueued: sizes, formats, pixel caps, threshold, ids.

A refused request costs the caller one round trip and costs Redis and the workers nothing; the
message names the image ("selfie" / "id_document") or the field, and why.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from model.decode import DecodeLimits, validate_image
from model.errors import ImageError
from protos.siamatch.v1 import face_verification_pb2 as pb
from server.errors import InvalidRequest
from siamatch.settings import Settings
from worker.contract import CLIENT_REQUEST_ID_MAX, IMAGE_SIDES


@dataclass(frozen=True)
class PairRequest:
    """A request that passed every check: what the job queue receives."""

    images: dict[str, bytes]  # side ("selfie" / "id_document") -> encoded bytes
    threshold: float | None
    client_request_id: str


async def validate_request(request: pb.VerifyPairRequest, settings: Settings) -> PairRequest:
    """Check a VerifyPairRequest; raise InvalidRequest naming the first problem found.

    The image check (model.decode.validate_image) walks each file's structure (and inflates a
    PNG's stream) to prove it complete, so it runs in a thread: the event loop keeps serving
    other calls meanwhile.
    """
    threshold = request.threshold if request.HasField("threshold") else None
    if threshold is not None and not (0.0 <= threshold <= 1.0):  # NaN fails both comparisons
        shown = "NaN" if math.isnan(threshold) else f"{threshold:g}"
        raise InvalidRequest(f"threshold: {shown} is outside [0, 1]")
    if len(request.client_request_id) > CLIENT_REQUEST_ID_MAX:
        raise InvalidRequest(
            f"client_request_id: {len(request.client_request_id)} characters, over the "
            f"maximum of {CLIENT_REQUEST_ID_MAX}"
        )
    if not request.client_request_id.isprintable():  # echoed into logs and terminals
        raise InvalidRequest("client_request_id: control characters are not allowed")
    images = {side: getattr(request, side) for side in IMAGE_SIDES}
    for side, data in images.items():
        check_size(side, data, settings.max_image_bytes)
    limits = DecodeLimits.from_settings(settings)
    for side, data in images.items():
        try:
            await asyncio.to_thread(validate_image, data, side, limits)
        except ImageError as exc:
            raise InvalidRequest(f"{exc.image}: {exc.message}") from None
    return PairRequest(images, threshold, request.client_request_id)


def check_size(side: str, data: bytes, max_bytes: int) -> None:
    """Empty and over-cap images are refused before any parsing."""
    if not data:
        raise InvalidRequest(f"{side}: empty (0 bytes)")
    if len(data) > max_bytes:
        raise InvalidRequest(
            f"{side}: {len(data):,} bytes, over the per-image cap of {max_bytes:,} bytes"
        )

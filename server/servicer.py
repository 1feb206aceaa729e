"""The FaceVerification RPCs: validate → submit → await → reply, and nothing else."""

from __future__ import annotations

import asyncio
import logging
import re

import grpc

from protos.siamatch.v1 import face_verification_pb2 as pb
from protos.siamatch.v1 import face_verification_pb2_grpc as pb_grpc
from server.errors import InvalidRequest, JobNotFound, ResultTimeout, translate_errors
from server.jobs import JobQueue
from server.replies import result_reply, verify_reply
from server.results import ResultWaiter
from server.validation import PairRequest, validate_request
from siamatch.settings import Settings
from worker.contract import Outcome, new_job_id

log = logging.getLogger(__name__)

# contract.new_job_id() makes URL-safe base64; anything else cannot name a job of ours.
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
# Verify answers this much before the caller's deadline so that the job is cancelled and the
# caller reads DEADLINE_EXCEEDED from us, with the reason, rather than from its own timer.
DEADLINE_MARGIN_S = 0.25


class FaceVerificationServicer(pb_grpc.FaceVerificationServicer):
    def __init__(self, settings: Settings, jobs: JobQueue, waiter: ResultWaiter) -> None:
        self.settings = settings
        self.jobs = jobs
        self.waiter = waiter
        self._cleanups: set[asyncio.Task[None]] = set()

    @translate_errors
    async def Verify(
        self, request: pb.VerifyPairRequest, context: grpc.aio.ServicerContext
    ) -> pb.VerifyPairResponse:
        budget = context.time_remaining()
        if budget is None:
            budget = self.settings.default_deadline_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, budget - min(DEADLINE_MARGIN_S, budget / 10))
        pair = await validate_request(request, self.settings)
        return verify_reply(await self._submit_and_wait(pair, deadline))

    @translate_errors
    async def SubmitVerify(
        self, request: pb.VerifyPairRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitVerifyResponse:
        pair = await validate_request(request, self.settings)
        job_id = await self.jobs.submit(pair)
        return pb.SubmitVerifyResponse(job_id=job_id, client_request_id=pair.client_request_id)

    @translate_errors
    async def GetVerifyResult(
        self, request: pb.GetVerifyResultRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetVerifyResultResponse:
        if not request.job_id:
            raise InvalidRequest("job_id: empty")
        if not JOB_ID.fullmatch(request.job_id):
            raise JobNotFound(f"job {request.job_id[:140]!r} is unknown")
        return result_reply(await self.jobs.inspect(request.job_id))

    async def close(self) -> None:
        """Let the cancellations of abandoned jobs finish before the process exits."""
        if self._cleanups:
            await asyncio.wait(self._cleanups, timeout=5.0)

    async def _submit_and_wait(self, pair: PairRequest, deadline: float) -> Outcome:
        """Enqueue with the result Future armed first; on timeout or cancellation, cancel the
        job and delete its images so that nothing nobody waits for stays queued."""
        loop = asyncio.get_running_loop()
        job_id = new_job_id()
        future = self.waiter.expect(job_id)
        try:
            await self.jobs.submit(pair, job_id)
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError
                await asyncio.wait_for(asyncio.shield(future), remaining)
                future = self.waiter.expect(job_id)  # re-arm before reading: no missed publish
                view = await self.jobs.inspect(job_id)
                if view.outcome is not None:
                    return view.outcome
        except TimeoutError:
            await self.jobs.discard(job_id)
            raise ResultTimeout(
                f"no worker finished job {job_id} within the deadline; the job was cancelled"
            ) from None
        except asyncio.CancelledError:
            # The caller went away (cancel, its own deadline) or the server is stopping.
            self._discard_later(job_id)
            raise
        finally:
            self.waiter.forget(job_id)

    def _discard_later(self, job_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self.jobs.discard(job_id))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

"""A small typed synchronous client of the FaceVerification service (used by the CLI and tests).

Errors surface as grpc.RpcError with the server's status code and message, unchanged.
"""

from __future__ import annotations

import time
from types import TracebackType

import grpc

from protos.siamatch.v1 import face_verification_pb2 as pb
from protos.siamatch.v1 import face_verification_pb2_grpc as pb_grpc
from siamatch.settings import Settings

ENDED = (pb.DONE, pb.FAILED)


class FaceVerificationClient:
    """One channel to one server; a context manager that closes the channel."""

    def __init__(
        self,
        address: str,
        max_message_bytes: int | None = None,
        timeout: float | None = 30.0,
    ) -> None:
        """`max_message_bytes` bounds what is sent and received (default: the size the
        server's own default settings accept, two images at the per-image cap)."""
        limit = max_message_bytes or Settings().grpc_max_message_bytes
        self.address = address
        self.timeout = timeout
        self._channel = grpc.insecure_channel(
            address,
            options=[
                ("grpc.max_send_message_length", limit),
                ("grpc.max_receive_message_length", limit),
            ],
        )
        self._stub = pb_grpc.FaceVerificationStub(self._channel)

    def verify(
        self,
        selfie: bytes,
        id_document: bytes,
        threshold: float | None = None,
        client_request_id: str = "",
        timeout: float | None = None,
    ) -> pb.VerifyPairResponse:
        """Verify a pair and wait for the result; `timeout` (seconds) is the call's deadline."""
        request = pair_request(selfie, id_document, threshold, client_request_id)
        return self._stub.Verify(request, timeout=self._timeout(timeout))

    def submit(
        self,
        selfie: bytes,
        id_document: bytes,
        threshold: float | None = None,
        client_request_id: str = "",
        timeout: float | None = None,
    ) -> pb.SubmitVerifyResponse:
        """Queue a pair; returns at once with the job id."""
        request = pair_request(selfie, id_document, threshold, client_request_id)
        return self._stub.SubmitVerify(request, timeout=self._timeout(timeout))

    def result(self, job_id: str, timeout: float | None = None) -> pb.GetVerifyResultResponse:
        """The job's state and, once it ended, its outcome."""
        request = pb.GetVerifyResultRequest(job_id=job_id)
        return self._stub.GetVerifyResult(request, timeout=self._timeout(timeout))

    def wait_result(
        self, job_id: str, timeout: float = 30.0, interval: float = 0.1
    ) -> pb.GetVerifyResultResponse:
        """Poll `result` until the job ends or `timeout` passes (then the last state seen)."""
        deadline = time.monotonic() + timeout
        while True:
            reply = self.result(job_id)
            if reply.state in ENDED or time.monotonic() >= deadline:
                return reply
            time.sleep(interval)

    def health(self, service: str = "", timeout: float | None = None) -> str:
        """The standard gRPC health status name: SERVING, NOT_SERVING, UNKNOWN, ..."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self._channel)
        reply = stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=self._timeout(timeout)
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> FaceVerificationClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout


def pair_request(
    selfie: bytes, id_document: bytes, threshold: float | None = None, client_request_id: str = ""
) -> pb.VerifyPairRequest:
    request = pb.VerifyPairRequest(
        selfie=selfie, id_document=id_document, client_request_id=client_request_id
    )
    if threshold is not None:
        request.threshold = threshold
    return request

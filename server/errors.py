"""The server's named failures and the ONE table that maps them to gRPC status codes.

Code deep in the server raises these (or lets a redis connection error through); only
`translate_errors`, wrapped once around each RPC, turns them into a status for the caller.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import redis.exceptions

log = logging.getLogger(__name__)
Rpc = TypeVar("Rpc", bound=Callable[..., Awaitable[Any]])


class ServiceError(Exception):
    """A request the service answers with an error status; the message goes to the caller."""


class InvalidRequest(ServiceError):
    """The request is malformed; the message names the field or image and why."""


class JobNotFound(ServiceError):
    """No job with this id exists: never submitted, or its result has expired."""


class QueueUnavailable(ServiceError):
    """Redis (the queue) cannot be reached; retrying later may succeed."""


class ResultTimeout(ServiceError):
    """No worker finished the job within the caller's deadline; the job was cancelled."""


# The one mapping from failure to status code. Order matters only for subclasses listed
# before their bases. Redis being down is UNAVAILABLE (retryable), never INTERNAL.
STATUS_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (JobNotFound, grpc.StatusCode.NOT_FOUND),
    (QueueUnavailable, grpc.StatusCode.UNAVAILABLE),
    (ResultTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (redis.exceptions.ConnectionError, grpc.StatusCode.UNAVAILABLE),
    (redis.exceptions.TimeoutError, grpc.StatusCode.UNAVAILABLE),
)


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and caller-facing message for an exception (INTERNAL when unmapped)."""
    for kind, code in STATUS_CODES:
        if isinstance(exc, kind):
            if isinstance(exc, redis.exceptions.RedisError):
                return code, f"the job queue (Redis) is unreachable: {exc}"
            return code, str(exc)
    return grpc.StatusCode.INTERNAL, "internal error (logged by the server)"


def translate_errors(rpc: Rpc) -> Rpc:
    """Wrap an RPC method: a mapped failure aborts the call with its status; anything else is
    logged with its traceback and answered INTERNAL without leaking details."""

    @functools.wraps(rpc)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await rpc(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - the edge: every failure becomes a status
            code, message = status_of(exc)
            if code is grpc.StatusCode.INTERNAL:
                log.exception("unexpected failure in %s", rpc.__name__)
            elif code is grpc.StatusCode.UNAVAILABLE:
                log.warning("%s: %s", rpc.__name__, message)
            await context.abort(code, message)

    return wrapper  # type: ignore[return-value]

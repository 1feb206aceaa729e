"""The server's Prometheus metrics: calls and latency by method and status code, Verify failures
by reason, queue depth and waiting calls, served on /metrics (Settings.metrics_port).

Each server owns its own registry (no module-level metrics: nothing at import time, and two
servers in one test process do not collide). The interceptor sees every FaceVerification call
after `server.errors.translate_errors` chose its status, so "errors by code" counts exactly what
callers received.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
import redis
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from protos.siamatch.v1 import face_verification_pb2 as pb
from siamatch.metrics_endpoint import MetricsEndpoint

SERVICE = pb.DESCRIPTOR.services_by_name["FaceVerification"].full_name
# Verify takes one model pass plus queueing: milliseconds to tens of seconds (the deadline).
LATENCY_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0
)  # fmt: skip


class ServerMetrics(MetricsEndpoint):
    """The server's metric families in a registry of its own, and the /metrics listener."""

    def __init__(self, connection: redis.Redis, queue_key: str, waiting: Callable[[], int]) -> None:
        """`connection` and `queue_key` (the RQ queue's list) are read on each scrape;
        `waiting` counts the Verify calls that wait for a worker's result."""
        super().__init__()
        self.calls = Counter(
            "siamatch_server_calls",
            "FaceVerification calls answered, by method and gRPC status code.",
            ("method", "code"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "siamatch_server_call_seconds",
            "Time from a call's arrival to its answer, by method.",
            ("method",),
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.failures = Counter(
            "siamatch_server_verify_failures",
            "Verify calls answered OK with a failure (NO_FACE, UNDECODABLE_IMAGE, ...), by reason.",
            ("reason",),
            registry=self.registry,
        )
        self.registry.register(_QueueCollector(connection, queue_key, waiting))
        self.interceptor = MetricsInterceptor(self)

    def observe(self, method: str, code: grpc.StatusCode, seconds: float, reply: Any) -> None:
        self.calls.labels(method, code.name).inc()
        self.latency.labels(method).observe(seconds)
        if isinstance(reply, pb.VerifyPairResponse) and reply.HasField("failure"):
            self.failures.labels(pb.FailureReason.Name(reply.failure.reason)).inc()


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Times each unary FaceVerification call and records the status code it ended with."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        service, _, method = details.method.lstrip("/").partition("/")
        if handler is None or service != SERVICE or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        metrics = self.metrics

        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            code, reply = grpc.StatusCode.UNKNOWN, None
            try:
                reply = await inner(request, context)
                code = grpc.StatusCode.OK
                return reply
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except BaseException:
                # The caller went away or the server is stopping (asyncio.CancelledError).
                code = grpc.StatusCode.CANCELLED
                raise
            finally:
                metrics.observe(method, code, time.perf_counter() - started, reply)

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class _QueueCollector(Collector):
    """Queue depth (read from Redis at scrape time) and Verify calls waiting for a result."""

    def __init__(self, connection: redis.Redis, queue_key: str, waiting: Callable[[], int]) -> None:
        self.connection = connection
        self.queue_key = queue_key
        self.waiting = waiting

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # collected lazily: no Redis call at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        waiting = GaugeMetricFamily(
            "siamatch_server_waiting_calls", "Verify calls waiting for a worker's result."
        )
        waiting.add_metric([], self.waiting())
        yield waiting
        try:
            depth = self.connection.llen(self.queue_key)
        except redis.RedisError:
            return  # Redis down: the family is absent for this scrape, not a false zero
        queued = GaugeMetricFamily(
            "siamatch_queue_depth", "Jobs queued in Redis that no worker has claimed yet."
        )
        queued.add_metric([], depth)
        yield queued

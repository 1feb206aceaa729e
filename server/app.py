"""Build and run the gRPC server: FaceVerification, health, reflection, signals, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from protos.siamatch.v1 import face_verification_pb2 as pb
from protos.siamatch.v1 import face_verification_pb2_grpc as pb_grpc
from server.jobs import JobQueue
from server.metrics import ServerMetrics
from server.results import ResultWaiter
from server.servicer import FaceVerificationServicer
from siamatch.local_redis import display_url
from siamatch.settings import Settings

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["FaceVerification"].full_name
# How long each signal-driven stop lets in-flight calls finish: a Verify without a client
# deadline waits at most default_deadline_s, so that plus a second covers every call.
GRACE_EXTRA_S = 1.0
# Health follows the queue: NOT_SERVING while the result subscription to Redis is down, so
# that probes stop routing calls that could only fail UNAVAILABLE. Checked this often (no I/O).
HEALTH_POLL_S = 0.5
STARTUP_REDIS_WAIT_S = 2.0


@dataclass
class RunningServer:
    """A started server and the parts its graceful stop must close, in order."""

    server: grpc.aio.Server
    port: int
    address: str
    health: health_aio.HealthServicer
    servicer: FaceVerificationServicer
    waiter: ResultWaiter
    jobs: JobQueue
    health_tracker: asyncio.Task[None]
    metrics: ServerMetrics | None = None

    async def stop(self, grace: float | None) -> None:
        """Health NOT_SERVING, refuse new calls, let in-flight ones finish within `grace`
        seconds (then cancel them, which cancels their jobs), then release Redis."""
        self.health_tracker.cancel()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        await self.servicer.close()
        await self.waiter.close()
        self.jobs.close()
        if self.metrics is not None:
            self.metrics.close()
        log.info("server on %s stopped", self.address)


async def start(settings: Settings) -> RunningServer:
    """Start serving on settings.address (port 0: a free port, reported in `.port`).

    Redis is not needed to start: the result subscription retries in the background, each
    RPC answers UNAVAILABLE and health says NOT_SERVING while Redis is down.
    """
    limit = settings.grpc_max_message_bytes
    jobs = JobQueue(settings)
    waiter = ResultWaiter(settings.effective_redis_url)
    metrics = None
    if settings.metrics_port:
        metrics = ServerMetrics(jobs.connection, jobs.queue.key, lambda: waiter.waiting)
    server = grpc.aio.server(
        interceptors=[metrics.interceptor] if metrics is not None else None,
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ],
    )
    servicer = FaceVerificationServicer(settings, jobs, waiter)
    pb_grpc.add_FaceVerificationServicer_to_server(servicer, server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    port = server.add_insecure_port(settings.address)
    host = settings.address.rsplit(":", 1)[0]
    address = f"{host}:{port}"
    waiter.start()
    await server.start()
    if metrics is not None:
        metrics.serve(host, settings.metrics_port)
    with contextlib.suppress(TimeoutError):  # usually subscribed within milliseconds
        await asyncio.wait_for(waiter.subscribed.wait(), STARTUP_REDIS_WAIT_S)
    tracker = asyncio.create_task(track_health(health, waiter), name="health-tracker")
    log.info("listening on %s (redis %s)", address, display_url(settings.effective_redis_url))
    return RunningServer(server, port, address, health, servicer, waiter, jobs, tracker, metrics)


async def track_health(health: health_aio.HealthServicer, waiter: ResultWaiter) -> None:
    """SERVING exactly while the result subscription to Redis is up."""
    current = None
    while True:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if waiter.subscribed.is_set()
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        if status != current:
            for service in ("", SERVICE_NAME):
                await health.set(service, status)
            if current is not None or status != health_pb2.HealthCheckResponse.SERVING:
                log.warning("health: %s", health_pb2.HealthCheckResponse.ServingStatus.Name(status))
            current = status
        await asyncio.sleep(HEALTH_POLL_S)


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or `stop` is set), then stop gracefully.

    SIGTERM (what compose and Kubernetes send) and SIGINT take the same graceful path; a
    second signal during the grace period stops at once.
    """
    stop = stop or asyncio.Event()
    running = await start(settings)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        for sig in signals:
            loop.add_signal_handler(sig, _on_signal, stop, running, sig)
    try:
        await stop.wait()
        await running.stop(settings.default_deadline_s + GRACE_EXTRA_S)
    finally:
        if in_main_thread:
            for sig in signals:
                loop.remove_signal_handler(sig)


def _on_signal(stop: asyncio.Event, running: RunningServer, sig: signal.Signals) -> None:
    if not stop.is_set():
        log.info("%s: stopping gracefully (in-flight calls finish)", sig.name)
        stop.set()
    else:
        log.warning("%s again: stopping now", sig.name)
        asyncio.get_running_loop().create_task(running.server.stop(None))


def run(settings: Settings) -> None:
    """Blocking entry point (`siamatch server`)."""
    asyncio.run(serve(settings))

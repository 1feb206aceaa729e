"""The service under test: a private redis-server and `siamatch serve`, as subprocesses on free
loopback ports, started per configuration and stopped (SIGTERM, then SIGKILL) afterwards.

`serve` is started exactly as an operator would start it, with the batching settings under test
as flags; its output goes to a log file in the results folder.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import grpc
import redis

from bench.photos import PhotoPair
from server.client import FaceVerificationClient

LOOPBACK = "127.0.0.1"
REDIS_START_S = 10.0
# `serve` loads the model and YuNet in each worker before the first answer (2 busy cores).
SERVICE_START_S = 300.0
STOP_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@contextmanager
def private_redis(workdir: Path) -> Iterator[str]:
    """An in-memory redis-server on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    argv = [binary, "--bind", LOOPBACK, "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(workdir), "--loglevel", "warning"]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://{LOOPBACK}:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + REDIS_START_S
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}") from None
                time.sleep(0.05)
        yield url
    finally:
        client.close()
        _stop(process)


@dataclass(frozen=True)
class ServiceConfig:
    workers: int
    max_batch_size: int
    max_batch_wait_ms: float
    torch_threads: int = 0  # 0: cores / workers, as in production

    def label(self) -> str:
        return f"batch<={self.max_batch_size}, wait<={self.max_batch_wait_ms:g} ms"


@dataclass(frozen=True)
class Served:
    address: str
    pid: int  # of `siamatch serve`; its workers are its children


@contextmanager
def running_service(
    config: ServiceConfig, redis_url: str, warmup: PhotoPair, log: IO[bytes]
) -> Iterator[Served]:
    """`siamatch serve` on a free port against `redis_url` (flushed first); yields it once a
    real pair has been verified (the workers have loaded the model)."""
    redis.Redis.from_url(redis_url).flushdb()
    address = f"{LOOPBACK}:{free_port()}"
    argv = [sys.executable, "-m", "siamatch.cli", "serve",
            "--redis-url", redis_url, "--address", address,
            "--workers", str(config.workers),
            "--max-batch-size", str(config.max_batch_size),
            "--max-batch-wait-ms", str(config.max_batch_wait_ms),
            "--torch-threads", str(config.torch_threads),
            "--log-level", "WARNING"]  # fmt: skip
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(process, address, warmup)
        yield Served(address, process.pid)
    finally:
        _stop(process)


def _wait_ready(process: subprocess.Popen[bytes], address: str, warmup: PhotoPair) -> None:
    deadline = time.monotonic() + SERVICE_START_S
    with FaceVerificationClient(address) as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"siamatch serve exited with code {process.returncode}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"siamatch serve did not answer within {SERVICE_START_S} s")
            try:
                client.verify(warmup.selfie, warmup.id_document, timeout=min(remaining, 60.0))
                return
            except grpc.RpcError as exc:
                if exc.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ):
                    raise
                time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="siamatch-bench-"))

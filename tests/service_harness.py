"""Real service parts for the server, end-to-end and CLI tests: a grpc.aio server on a free
loopback port in a background thread, and real worker processes (`python -m worker.main`)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import redis
from rq import Queue

from server.app import RunningServer, start
from siamatch.settings import Settings
from worker.contract import IMAGE_SIDES, QUEUE_NAME, image_key

ROOT = Path(__file__).resolve().parent.parent


def service_settings(redis_url: str, **overrides: object) -> Settings:
    """Settings for a test service: loopback, port 0, one torch thread per worker."""
    base = Settings(redis_url=redis_url, address="127.0.0.1:0", torch_threads=1, log_level="INFO")
    return replace(base, **overrides)


class ServerThread:
    """A real grpc.aio server running its own event loop in a daemon thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.running: RunningServer | None = None

    @property
    def address(self) -> str:
        assert self.running is not None
        return self.running.address

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self.running = self._call(start(self.settings))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.running is not None:
            self._call(self.running.stop(0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def _call(self, coroutine):  # noqa: ANN001, ANN202
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)


def start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    """`python -m worker.main` with the settings in its environment, as `siamatch serve` does."""
    env = {**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "worker.main"], env=env, cwd=ROOT)


@contextmanager
def running_workers(settings: Settings, count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    workers = [start_worker(settings) for _ in range(count)]
    try:
        yield workers
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def queued_jobs(conn: redis.Redis) -> int:
    return Queue(QUEUE_NAME, connection=conn).count


def image_keys(conn: redis.Redis) -> list[bytes]:
    return list(conn.scan_iter(match=image_key("*", "*")))


def job_image_keys(conn: redis.Redis, job_id: str) -> int:
    return conn.exists(*(image_key(job_id, side) for side in IMAGE_SIDES))

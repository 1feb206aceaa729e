"""Shared fixtures: a private real Redis per test session, and the real face photos.

Each pytest session starts its own redis-server on a free loopback port (no mocks; isolated from
whatever else uses 127.0.0.1:6379). Set SIAMATCH_TEST_REDIS_URL to use an existing one instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

FIXTURES = Path(__file__).parent / "fixtures"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    existing = os.environ.get("SIAMATCH_TEST_REDIS_URL")
    if existing:
        yield existing
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    """A client on an emptied database: each test starts from a clean Redis."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


def photo(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture(scope="session")
def same_person_pair() -> tuple[bytes, bytes]:
    return photo("George_W_Bush_0001.jpg"), photo("George_W_Bush_0002.jpg")


@pytest.fixture(scope="session")
def different_person_pair() -> tuple[bytes, bytes]:
    return photo("Colin_Powell_0001.jpg"), photo("Serena_Williams_0001.jpg")

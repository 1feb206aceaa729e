"""Find the Redis `siamatch serve` uses, or start a private redis-server when none answers.

A fresh machine then needs nothing beyond the install command and the redis-server binary.
"""

from __future__ import annotations

import logging
import re
import shutil
import socket
import tempfile
import time

import redis

from siamatch.settings import Settings
from siamatch.supervisor import Supervisor

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6379
STARTUP_TIMEOUT_S = 10.0


class RedisServerMissing(RuntimeError):
    """No Redis answers and the redis-server binary is not installed."""


def display_url(url: str) -> str:
    """The URL with any password masked, for logs."""
    return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", url)


def answers(url: str, timeout: float = 0.5) -> bool:
    """True when a Redis at `url` replies to PING."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.exceptions.RedisError, OSError):
        return False
    finally:
        client.close()


def ensure_redis(settings: Settings, supervisor: Supervisor) -> str:
    """The Redis URL to use: the configured one; else 127.0.0.1:6379 when it answers; else a
    private redis-server started under `supervisor` (on 6379 when free, any port otherwise)."""
    if settings.redis_url:
        if not answers(settings.redis_url):
            log.warning(
                "Redis at %s does not answer (yet); continuing", display_url(settings.redis_url)
            )
        return settings.redis_url
    if answers(settings.effective_redis_url):
        log.info("using the Redis answering at %s", display_url(settings.effective_redis_url))
        return settings.effective_redis_url
    return start_private_redis(supervisor)


def start_private_redis(supervisor: Supervisor) -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisServerMissing(
            "no Redis answers at 127.0.0.1:6379 and redis-server is not installed: install it "
            "(e.g. `apt-get install redis-server`) or point SIAMATCH_REDIS_URL / --redis-url "
            "at a running Redis"
        )
    port = DEFAULT_PORT if _port_free(DEFAULT_PORT) else _free_port()
    workdir = tempfile.mkdtemp(prefix="siamatch-redis-")
    # In-memory only: the private Redis lives and dies with `serve`, its jobs with it.
    argv = [binary, "--bind", DEFAULT_HOST, "--port", str(port), "--save", "",
            "--appendonly", "no", "--dir", workdir, "--loglevel", "warning"]  # fmt: skip
    process = supervisor.start("redis-server", argv)
    url = f"redis://{DEFAULT_HOST}:{port}/0"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the private redis-server did not start on port {port}")
        time.sleep(0.05)
    log.info("started a private redis-server at %s", url)
    return url


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((DEFAULT_HOST, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((DEFAULT_HOST, 0))
        return sock.getsockname()[1]

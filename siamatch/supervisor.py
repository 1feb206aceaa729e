"""Child processes of `siamatch serve` (redis-server, workers): start, restart, stop in order.

Children run in their own session, so a terminal's Ctrl+C reaches only `serve`, which stops
the gRPC server first (in-flight calls still need the workers), then the workers, then Redis.
On Linux each child also receives SIGTERM if `serve` itself dies, so none is orphaned.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

log = logging.getLogger(__name__)

# A child that keeps dying is restarted at most this often.
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
# A child that ran this long before dying is treated as healthy again (backoff resets).
HEALTHY_AFTER_S = 60.0


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] | None
    restart: bool
    process: subprocess.Popen[bytes]
    started_at: float = field(default_factory=time.monotonic)
    failures: int = 0
    restart_at: float | None = None


class Supervisor:
    """Owns child processes; `stop_all` (also on exiting the `with` block) ends them all."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        restart: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start a child with `env` laid over this process's environment; with `restart`,
        `check()` starts it again when it dies.

        Call from the main thread only: the parent-death signal is tied to the thread that
        forks, and a worker thread exiting would stop the child.
        """
        process = _spawn(list(argv), env)
        self.children.append(Child(name, list(argv), env, restart, process))
        log.info("started %s (pid %d)", name, process.pid)
        return process

    def check(self) -> None:
        """Log children that died and restart the restartable ones, with backoff."""
        now = time.monotonic()
        for child in self.children:
            code = child.process.poll()
            if code is None:
                continue
            if child.restart_at is None:
                if now - child.started_at >= HEALTHY_AFTER_S:
                    child.failures = 0
                if not child.restart:
                    continue
                delay = RESTART_BACKOFF_S[min(child.failures, len(RESTART_BACKOFF_S) - 1)]
                child.failures += 1
                child.restart_at = now + delay
                log.error("%s exited with code %s; restarting in %.0f s", child.name, code, delay)
            if now >= child.restart_at:
                child.process = _spawn(child.argv, child.env)
                child.started_at = now
                child.restart_at = None
                log.info("restarted %s (pid %d)", child.name, child.process.pid)

    def exited(self) -> list[Child]:
        """Children that ended and will not be restarted."""
        return [c for c in self.children if not c.restart and c.process.poll() is not None]

    def stop_all(self, timeout: float = 30.0) -> None:
        """SIGTERM every child, newest first, each given `timeout` s before SIGKILL."""
        for child in reversed(self.children):
            process = child.process
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=timeout)
                except (subprocess.TimeoutExpired, KeyboardInterrupt):
                    log.warning("%s did not stop in %.0f s; killing it", child.name, timeout)
                    process.kill()
                    process.wait()
            log.info("%s stopped (code %s)", child.name, process.returncode)
        self.children.clear()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()


def _spawn(argv: list[str], env: dict[str, str] | None) -> subprocess.Popen[bytes]:
    # The child inherits PATH, PYTHONPATH and the like; settings travel in `env`.
    return subprocess.Popen(
        argv,
        env={**os.environ, **(env or {})},
        start_new_session=True,
        preexec_fn=_parent_death_signal(),
    )


def _parent_death_signal() -> Callable[[], None] | None:
    """prctl(PR_SET_PDEATHSIG, SIGTERM) in the child, where Linux offers it."""
    if (
        not sys.platform.startswith("linux")
        or threading.current_thread() is not threading.main_thread()
    ):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    pr_set_pdeathsig = 1

    def set_signal() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return set_signal

"""The `siamatch` command: flags from Settings, the service processes and their signals.

`server` and `serve` run as real subprocesses (as a user runs them) against the session's real
Redis, on port 0; their log line says where they listen.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.app import SERVICE_NAME
from server.client import FaceVerificationClient
from siamatch.cli import build_parser
from siamatch.local_redis import RedisServerMissing, answers, start_private_redis
from siamatch.settings import Settings
from siamatch.supervisor import Supervisor
from tests.conftest import photo
from tests.service_harness import ROOT

LISTENING = re.compile(r"listening on (\S+)")
STARTED_WORKER = re.compile(r"started worker-\d+ \(pid (\d+)\)")


class Service:
    """A `siamatch` service subprocess whose log is collected line by line."""

    def __init__(self, argv: list[str]) -> None:
        env = {**os.environ, "SIAMATCH_TORCH_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "siamatch.cli", *argv],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip())

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 60.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := pattern.search(line):
                    return match
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {pattern.pattern!r} in the log:\n{self.log}")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60.0) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code


@contextmanager
def service(argv: list[str]) -> Iterator[Service]:
    running = Service(argv)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status


@pytest.mark.parametrize("role", ["serve", "server", "worker", "verify"])
def test_every_setting_of_a_role_is_a_flag(role: str) -> None:
    parser = build_parser([role])
    settings_role = "client" if role == "verify" else role
    subparser = parser._subparsers._group_actions[0].choices[role]  # noqa: SLF001
    flags = {flag for action in subparser._actions for flag in action.option_strings}  # noqa: SLF001
    for field in Settings.fields():
        if settings_role in field.metadata["roles"]:
            assert field.metadata["flag"] in flags


def test_flags_become_settings() -> None:
    argv = ["server", "--address", "127.0.0.1:0", "--max-image-bytes", "1234"]
    settings = Settings.from_args(build_parser(argv).parse_args(argv))
    assert settings.address == "127.0.0.1:0" and settings.max_image_bytes == 1234


def test_unknown_command_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "siamatch.cli", "frobnicate"], capture_output=True, cwd=ROOT
    )
    assert done.returncode == 2


def test_verify_of_a_missing_file_says_which(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    done = subprocess.run(
        [sys.executable, "-m", "siamatch.cli", "verify", str(missing), str(missing)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2 and "nope.jpg" in done.stderr


def test_verify_refuses_an_oversized_file_naming_it_before_sending(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff" * 2000)
    done = subprocess.run(
        [sys.executable, "-m", "siamatch.cli", "verify", str(big), str(big)],
        capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "SIAMATCH_MAX_IMAGE_BYTES": "1000"},
    )  # fmt: skip
    assert done.returncode == 2 and "big.jpg" in done.stderr and "1,000" in done.stderr


@pytest.mark.parametrize("timeout", ["0", "-1", "nan"])
def test_pointless_timeouts_are_usage_errors(timeout: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "siamatch.cli", "verify", "a.jpg", "b.jpg", "--timeout", timeout],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2 and "--timeout" in done.stderr


def test_client_reports_an_unreachable_server() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "siamatch.cli", "result", "A" * 32, "--address", "127.0.0.1:1"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 1 and "UNAVAILABLE" in done.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_server_stops_gracefully_on_signals(redis_url: str, sig: signal.Signals) -> None:
    with service(["server", "--address", "127.0.0.1:0", "--redis-url", redis_url]) as running:
        address = running.wait_for(LISTENING).group(1)
        assert health(address) == health_pb2.HealthCheckResponse.SERVING
        assert running.stop(sig) == 0
        assert "stopping gracefully" in running.log and "stopped" in running.log


def test_serve_runs_the_whole_service_and_stops_it_in_order(redis_url: str) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/6"
    argv = ["serve", "--address", "127.0.0.1:0", "--redis-url", url, "--workers", "1"]
    with service(argv) as running:
        address = running.wait_for(LISTENING).group(1)
        worker_pid = int(running.wait_for(STARTED_WORKER).group(1))
        selfie, id_document = photo("George_W_Bush_0001.jpg"), photo("George_W_Bush_0002.jpg")
        with FaceVerificationClient(address) as client:
            assert client.verify(selfie, id_document, timeout=180).WhichOneof("outcome") == "result"
            # A backlog keeps the next Verify in flight while the signal arrives: the server
            # must let it finish, and so must keep the worker running until it has.
            for _ in range(4):
                client.submit(selfie, id_document)
            replies: list[object] = []
            call = threading.Thread(
                target=lambda: replies.append(client.verify(selfie, id_document, timeout=60))
            )
            call.start()
            time.sleep(0.3)
            assert running.stop(signal.SIGTERM) == 0
            call.join(timeout=60)
        assert replies and replies[0].WhichOneof("outcome") == "result"  # type: ignore[attr-defined]
        with pytest.raises(ProcessLookupError):
            os.kill(worker_pid, 0)  # the worker was stopped with serve
        assert "worker-0 stopped (code 0)" in running.log


def test_private_redis_starts_and_stops() -> None:
    with Supervisor() as supervisor:
        url = start_private_redis(supervisor)
        assert answers(url)
    assert not answers(url)


def test_missing_redis_server_binary_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with Supervisor() as supervisor, pytest.raises(RedisServerMissing, match="redis-server"):
        start_private_redis(supervisor)

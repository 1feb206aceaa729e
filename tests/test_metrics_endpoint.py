"""Prometheus /metrics of a real server and a real worker process, scraped over HTTP.

Asserts that the metric families exist and move with real calls: a verified pair, a pair with
no face, and a refused request. Only deltas are asserted; values depend on the machine.
"""

from __future__ import annotations

import io
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import grpc
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from server.client import FaceVerificationClient
from tests.conftest import free_port, photo
from tests.service_harness import ServerThread, running_workers, service_settings

FIRST_CALL_TIMEOUT_S = 180.0
CALL_TIMEOUT_S = 60.0

SERVER_FAMILIES = {
    "siamatch_server_calls",
    "siamatch_server_call_seconds",
    "siamatch_server_verify_failures",
    "siamatch_server_waiting_calls",
    "siamatch_queue_depth",
}
WORKER_FAMILIES = {
    "siamatch_worker_batch_size",
    "siamatch_worker_queue_wait_seconds",
    "siamatch_worker_preprocess_seconds",
    "siamatch_worker_inference_seconds",
    "siamatch_worker_pairs",
    "siamatch_worker_batch_errors",
    "siamatch_worker_retries",
}


@dataclass
class Service:
    address: str
    server_metrics: str
    worker_metrics: str


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Sample name + sorted labels → value, from one GET of a /metrics page."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def families(url: str) -> set[str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return {f.name for f in text_string_to_metric_families(response.read().decode())}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def service(redis_url: str) -> Iterator[Service]:
    url = redis_url.rsplit("/", 1)[0] + "/6"  # a database the per-test flushes do not touch
    settings = service_settings(url, workers=1, metrics_port=free_port())
    worker_settings = replace(settings, metrics_port=free_port())
    with running_workers(worker_settings, 1), ServerThread(settings) as server:
        with FaceVerificationClient(server.address) as client:  # wait for the model to load
            client.verify(photo("George_W_Bush_0001.jpg"), photo("George_W_Bush_0002.jpg"),
                          timeout=FIRST_CALL_TIMEOUT_S)  # fmt: skip
        yield Service(
            server.address,
            f"http://127.0.0.1:{settings.metrics_port}/metrics",
            f"http://127.0.0.1:{worker_settings.metrics_port}/metrics",
        )


@pytest.fixture
def client(service: Service) -> Iterator[FaceVerificationClient]:
    with FaceVerificationClient(service.address, timeout=CALL_TIMEOUT_S) as c:
        yield c


def faceless_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (160, 160), (120, 160, 200)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_families_are_exposed(service: Service) -> None:
    assert families(service.server_metrics) >= SERVER_FAMILIES
    assert families(service.worker_metrics) >= WORKER_FAMILIES


def test_a_verified_pair_moves_server_and_worker_metrics(
    service: Service, client: FaceVerificationClient
) -> None:
    server_before = scrape(service.server_metrics)
    worker_before = scrape(service.worker_metrics)

    reply = client.verify(photo("Colin_Powell_0001.jpg"), photo("Serena_Williams_0001.jpg"))
    assert reply.WhichOneof("outcome") == "result"

    server_after = scrape(service.server_metrics)
    worker_after = _scrape_until(
        service.worker_metrics, _counter_moved("siamatch_worker_pairs_total", worker_before)
    )

    def moved(before: dict, after: dict, name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved(server_before, server_after, "siamatch_server_calls_total",
                 method="Verify", code="OK") == 1  # fmt: skip
    assert moved(server_before, server_after, "siamatch_server_call_seconds_count",
                 method="Verify") == 1  # fmt: skip
    assert moved(server_before, server_after, "siamatch_server_call_seconds_sum",
                 method="Verify") > 0  # fmt: skip
    assert value(server_after, "siamatch_queue_depth") >= 0
    assert moved(worker_before, worker_after, "siamatch_worker_pairs_total", outcome="OK") == 1
    assert moved(worker_before, worker_after, "siamatch_worker_batch_size_count") == 1
    assert moved(worker_before, worker_after, "siamatch_worker_inference_seconds_count") == 1
    assert moved(worker_before, worker_after, "siamatch_worker_inference_seconds_sum") > 0
    assert moved(worker_before, worker_after, "siamatch_worker_preprocess_seconds_count") == 1
    assert moved(worker_before, worker_after, "siamatch_worker_queue_wait_seconds_count") == 1


def test_failures_are_counted_by_reason_and_code(
    service: Service, client: FaceVerificationClient
) -> None:
    server_before = scrape(service.server_metrics)
    worker_before = scrape(service.worker_metrics)

    reply = client.verify(faceless_jpeg(), photo("George_W_Bush_0001.jpg"))
    assert reply.failure.reason  # NO_FACE, answered OK
    with pytest.raises(grpc.RpcError) as refused:
        client.verify(b"not an image", photo("George_W_Bush_0001.jpg"))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    labels = {"method": "Verify", "code": "INVALID_ARGUMENT"}
    # grpc.aio sends an aborted call's status before the interceptor's `finally` counts it
    server_after = _scrape_until(
        service.server_metrics,
        lambda after: (
            value(after, "siamatch_server_calls_total", **labels)
            > value(server_before, "siamatch_server_calls_total", **labels)
        ),
    )
    worker_after = _scrape_until(
        service.worker_metrics, _counter_moved("siamatch_worker_pairs_total", worker_before)
    )
    assert (
        value(server_after, "siamatch_server_verify_failures_total", reason="NO_FACE")
        - value(server_before, "siamatch_server_verify_failures_total", reason="NO_FACE")
        == 1
    )
    assert (
        value(server_after, "siamatch_server_calls_total", **labels)
        - value(server_before, "siamatch_server_calls_total", **labels)
        == 1
    )
    assert (
        value(worker_after, "siamatch_worker_pairs_total", outcome="NO_FACE")
        - value(worker_before, "siamatch_worker_pairs_total", outcome="NO_FACE")
        == 1
    )


def _counter_moved(counter: str, before: dict) -> Callable[[dict], bool]:
    """True once any label set of `counter` has grown since `before`."""

    def total(samples: dict) -> float:
        return sum(v for (name, _), v in samples.items() if name == counter)

    return lambda after: total(after) > total(before)


def _scrape_until(url: str, ready: Callable[[dict], bool], timeout_s: float = 10.0) -> dict:
    """Scrapes until `ready` holds: a metric may be counted a hair after the caller's answer
    (the worker counts a pair just after publishing it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        after = scrape(url)
        if ready(after) or time.monotonic() > deadline:
            return after
        time.sleep(0.05)

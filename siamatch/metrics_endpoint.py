"""Serving one process's Prometheus registry on /metrics (the server's and each worker's)."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

log = logging.getLogger(__name__)


class MetricsEndpoint:
    """A registry of this process's own (no module-level metrics: nothing at import time, and two
    servers in one test process do not collide) and its optional HTTP listener."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._http: Any = None

    def serve(self, host: str, port: int) -> None:
        """Serve /metrics on host:port from a daemon thread."""
        self._http, _ = start_http_server(port, addr=host.strip("[]"), registry=self.registry)
        log.info("Prometheus metrics on http://%s:%d/metrics", host, port)

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

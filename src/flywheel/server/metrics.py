"""Prometheus metrics, shared across worker processes through prometheus-client's
multiprocess mode when the server runs several workers."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REQUESTS = Counter("flywheel_http_requests", "HTTP requests", ["route", "method", "status"])
BYTES_IN = Counter("flywheel_http_request_bytes", "Request body bytes received", ["cache"])
BYTES_OUT = Counter("flywheel_http_response_bytes", "Response body bytes sent", ["cache"])
NARINFO_LOOKUPS = Counter("flywheel_nix_narinfo_lookups", "narinfo lookups by outcome",
                          ["cache", "result"])
UPLOADS = Counter("flywheel_nix_uploads", "Nix uploads by kind and outcome",
                  ["cache", "kind", "result"])


def exposition() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST

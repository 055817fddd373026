"""Prometheus metrics, shared across worker processes through prometheus-client's
multiprocess mode when the server runs several workers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric

KNOWN_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """Clients choose method names; only known ones may become label values."""
    return method if method in KNOWN_METHODS else "other"


REQUESTS = Counter("flywheel_http_requests", "HTTP requests", ["route", "method", "status"])
BYTES_IN = Counter("flywheel_http_request_bytes", "Request body bytes received", ["cache"])
BYTES_OUT = Counter("flywheel_http_response_bytes", "Response body bytes sent", ["cache"])
NARINFO_LOOKUPS = Counter("flywheel_nix_narinfo_lookups", "narinfo lookups by outcome",
                          ["cache", "result"])
UPLOADS = Counter("flywheel_nix_uploads", "Nix uploads by kind and outcome",
                  ["cache", "kind", "result"])
BAZEL_LOOKUPS = Counter("flywheel_bazel_lookups", "Bazel action-cache and CAS lookups",
                        ["cache", "kind", "result"])
BAZEL_UPLOADS = Counter("flywheel_bazel_uploads", "Bazel entries stored", ["cache", "kind"])


_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def count(counter: Counter, *labels: str, amount: float = 1) -> None:
    """``counter.labels(*labels).inc(amount)``, remembering each labelled child: resolving
    labels costs more than the increment, and the label sets are few and fixed."""
    key = (id(counter), labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = counter.labels(*labels)
    child.inc(amount)


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


class _Visible:
    """The registry's metrics without the samples of caches the caller may not read."""

    def __init__(self, registry: CollectorRegistry, visible: Callable[[str], bool]) -> None:
        self._registry = registry
        self._visible = visible

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            kept = Metric(family.name, family.documentation, family.type, family.unit)
            kept.samples = [s for s in family.samples
                            if "cache" not in s.labels or self._visible(s.labels["cache"])]
            yield kept


def exposition(visible: Callable[[str], bool]) -> tuple[bytes, str]:
    """The Prometheus text, with per-cache samples only for caches ``visible`` admits."""
    return generate_latest(_Visible(_registry(), visible)), CONTENT_TYPE_LATEST


def lookup_counts() -> dict[str, dict[str, int]]:
    """Hits and misses per cache, summed over every worker process:
    {cache: {"nix_hit": n, "nix_miss": n, "ac_hit": n, "ac_miss": n, "cas_hit": ...}}."""
    counts: dict[str, dict[str, int]] = {}
    for family in _registry().collect():
        if family.name not in ("flywheel_nix_narinfo_lookups", "flywheel_bazel_lookups"):
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            kind = sample.labels.get("kind", "nix")
            key = f"{kind}_{sample.labels['result']}"
            per_cache = counts.setdefault(sample.labels["cache"], {})
            per_cache[key] = per_cache.get(key, 0) + int(sample.value)
    return counts

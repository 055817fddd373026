"""Prometheus metrics, shared across worker processes through prometheus-client's
multiprocess mode when the server runs several workers."""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
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


# Counts reach the shared (multiprocess) counters in batches: writing one there takes a
# lock and a write to a memory-mapped file, several times what a hot request costs
# otherwise. A batch is written at most this long after its first count.
FLUSH_SECONDS = 0.5

# (counter, labels) -> [labelled child, amount not yet written]
_pending: dict[tuple[int, tuple[str, ...]], list[Any]] = {}
_lock = threading.Lock()
_flush_scheduled = False


def count(counter: Counter, *labels: str, amount: float = 1) -> None:
    """``counter.labels(*labels).inc(amount)``, batched (see FLUSH_SECONDS)."""
    global _flush_scheduled
    key = (id(counter), labels)
    with _lock:
        entry = _pending.get(key)
        if entry is None:
            entry = _pending[key] = [counter.labels(*labels), 0.0]
        entry[1] += amount
        if _flush_scheduled:
            return
        _flush_scheduled = True
    try:
        asyncio.get_running_loop().call_later(FLUSH_SECONDS, flush)
    except RuntimeError:  # no event loop in this thread: write at once
        flush()


@atexit.register
def flush() -> None:
    """Write what was counted to the shared counters."""
    global _flush_scheduled
    with _lock:
        _flush_scheduled = False
        for entry in _pending.values():
            if entry[1]:
                entry[0].inc(entry[1])
                entry[1] = 0.0


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
    flush()
    return generate_latest(_Visible(_registry(), visible)), CONTENT_TYPE_LATEST


def lookup_counts() -> dict[str, dict[str, int]]:
    """Hits and misses per cache, summed over every worker process:
    {cache: {"nix_hit": n, "nix_miss": n, "ac_hit": n, "ac_miss": n, "cas_hit": ...}}."""
    flush()
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

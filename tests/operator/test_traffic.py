"""Cache traffic lives in the database: counted by every worker, the same figure whichever
worker answers, and still there after a restart (Prometheus' counters start again)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import httpx

from tests.support.server import FlywheelServer


def _figures(srv: FlywheelServer, want_lookups: int) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while True:
        found = httpx.get(f"{srv.url}/_api/v1/cache-figures/main", headers={
            "authorization": f"Bearer {srv.admin_token}"}).json()["figures"]
        if found["hits_day"] + found["misses_day"] >= want_lookups or \
                time.monotonic() > deadline:
            return dict(found)
        time.sleep(0.5)


def test_hits_are_counted_across_workers_and_survive_a_restart(tmp_path: Path) -> None:
    srv = FlywheelServer(tmp_path / "data", workers=2).start()
    try:
        admin = {"authorization": f"Bearer {srv.admin_token}"}
        blob = os.urandom(4096)
        digest = hashlib.sha256(blob).hexdigest()
        assert httpx.put(f"{srv.url}/main/cas/{digest}", content=blob,
                         headers=admin).status_code == 200
        for _ in range(6):   # new connections: the kernel spreads them over both workers
            assert httpx.get(f"{srv.url}/main/cas/{digest}").status_code == 200
        for _ in range(2):
            assert httpx.get(f"{srv.url}/main/cas/{'0' * 64}").status_code == 404
        figures = _figures(srv, 8)
        assert (figures["hits_day"], figures["misses_day"]) == (6, 2)
        assert figures["bytes_served_day"] == 6 * len(blob)
        pushers = httpx.get(f"{srv.url}/_api/v1/cache-figures/main",
                            headers=admin).json()["pushers"]
        assert pushers == [{"pusher": "admin", "uploads": 1, "bytes_in": len(blob)}]
        srv.restart()
        after = httpx.get(f"{srv.url}/_api/v1/cache-figures/main", headers=admin).json()
        assert (after["figures"]["hits_day"], after["figures"]["misses_day"]) == (6, 2)
        metrics = httpx.get(f"{srv.url}/metrics").text
        assert 'flywheel_bazel_lookups_total{cache="main",kind="cas",result="hit"}' \
            not in metrics                      # Prometheus starts again from zero
    finally:
        srv.stop()

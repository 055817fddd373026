"""Cache traffic in the database: hits, misses and bytes served per cache and minute, and
what each pusher stored per hour, so every replica shows the same figures and they survive
restarts.

The hot routes only add to counters in memory (a dict update under a lock); a thread adds
them to the database every few seconds in one transaction, so a narinfo hit never waits on
a write."""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from flywheel.db.engine import Database
from flywheel.operator.schema import cache_pushes, cache_traffic

log = logging.getLogger(__name__)

FLUSH_SECONDS = 2.0
MINUTE = 60
HOUR = 3600
KINDS = ("nix", "ac", "cas")


@dataclass(frozen=True)
class CacheTraffic:
    hits: int
    misses: int
    bytes_out: int

    @property
    def lookups(self) -> int:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.lookups if self.lookups else None


@dataclass(frozen=True)
class Pusher:
    pusher: str
    count: int
    bytes_in: int


def _upsert(conn: Connection, table: Table, keys: tuple[str, ...], rows: list[dict[str, Any]],
            added: tuple[str, ...]) -> None:
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)
    conn.execute(insert.on_conflict_do_update(
        index_elements=list(keys),
        set_={c: table.c[c] + insert.excluded[c] for c in added}), rows)


class TrafficCounter:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        self._lock = threading.Lock()
        self._lookups: defaultdict[tuple[str, str, int], list[int]] = defaultdict(
            lambda: [0, 0, 0])
        self._pushes: defaultdict[tuple[str, str, int], list[int]] = defaultdict(
            lambda: [0, 0])
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- the hot side: memory only --

    def lookup(self, cache: str, kind: str, hit: bool, bytes_out: int = 0) -> None:
        key = (cache, kind, int(self._clock()) // MINUTE * MINUTE)
        with self._lock:
            counts = self._lookups[key]
            counts[0 if hit else 1] += 1
            counts[2] += bytes_out
        self._started()

    def served(self, cache: str, kind: str, bytes_out: int) -> None:
        key = (cache, kind, int(self._clock()) // MINUTE * MINUTE)
        with self._lock:
            self._lookups[key][2] += bytes_out
        self._started()

    def pushed(self, cache: str, pusher: str | None, bytes_in: int) -> None:
        key = (cache, (pusher or "anonymous")[:255], int(self._clock()) // HOUR * HOUR)
        with self._lock:
            counts = self._pushes[key]
            counts[0] += 1
            counts[1] += bytes_in
        self._started()

    def _started(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, daemon=True,
                                                    name="flywheel-traffic")
                    self._thread.start()
                    atexit.register(self.close)

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            try:
                self.flush()
            except Exception:  # the database is away: keep the counts, try again later
                log.warning("could not store cache traffic counts; retrying", exc_info=True)

    def flush(self) -> None:
        with self._lock:
            lookups, self._lookups = self._lookups, defaultdict(lambda: [0, 0, 0])
            pushes, self._pushes = self._pushes, defaultdict(lambda: [0, 0])
        if not lookups and not pushes:
            return
        try:
            with self._db.write() as conn:
                if lookups:
                    _upsert(conn, cache_traffic, ("cache", "kind", "bucket"),
                            [{"cache": c, "kind": k, "bucket": b, "hits": h, "misses": m,
                              "bytes_out": n} for (c, k, b), (h, m, n) in lookups.items()],
                            ("hits", "misses", "bytes_out"))
                if pushes:
                    _upsert(conn, cache_pushes, ("cache", "pusher", "bucket"),
                            [{"cache": c, "pusher": p, "bucket": b, "count": n,
                              "bytes_in": size} for (c, p, b), (n, size) in pushes.items()],
                            ("count", "bytes_in"))
        except Exception:
            with self._lock:   # put them back, added to what came meanwhile
                for key, counts in lookups.items():
                    for i, n in enumerate(counts):
                        self._lookups[key][i] += n
                for key, counts in pushes.items():
                    for i, n in enumerate(counts):
                        self._pushes[key][i] += n
            raise

    def close(self) -> None:
        self._stop.set()
        try:
            self.flush()
        except Exception:
            log.warning("cache traffic counts of the last seconds were not stored",
                        exc_info=True)

    # -- the reading side --

    def totals(self, since: int) -> dict[str, dict[str, CacheTraffic]]:
        """{cache: {kind: traffic}} since an instant."""
        with self._db.read() as conn:
            rows = conn.execute(select(
                cache_traffic.c.cache, cache_traffic.c.kind, func.sum(cache_traffic.c.hits),
                func.sum(cache_traffic.c.misses), func.sum(cache_traffic.c.bytes_out))
                .where(cache_traffic.c.bucket >= since)
                .group_by(cache_traffic.c.cache, cache_traffic.c.kind)).all()
        found: dict[str, dict[str, CacheTraffic]] = {}
        for cache, kind, hits, misses, out in rows:
            found.setdefault(cache, {})[kind] = CacheTraffic(int(hits), int(misses), int(out))
        return found

    def series(self, cache: str, since: int, step: int) -> list[tuple[int, CacheTraffic]]:
        """Hits and misses of one cache (all kinds) per ``step`` seconds since an instant,
        only the intervals with traffic."""
        bucket = cache_traffic.c.bucket - cache_traffic.c.bucket % step
        with self._db.read() as conn:
            rows = conn.execute(select(
                bucket, func.sum(cache_traffic.c.hits), func.sum(cache_traffic.c.misses),
                func.sum(cache_traffic.c.bytes_out))
                .where(cache_traffic.c.cache == cache, cache_traffic.c.bucket >= since)
                .group_by(bucket).order_by(bucket)).all()
        return [(int(b), CacheTraffic(int(h), int(m), int(o))) for b, h, m, o in rows]

    def top_pushers(self, cache: str, since: int, limit: int = 10) -> list[Pusher]:
        with self._db.read() as conn:
            rows = conn.execute(select(
                cache_pushes.c.pusher, func.sum(cache_pushes.c.count).label("n"),
                func.sum(cache_pushes.c.bytes_in))
                .where(cache_pushes.c.cache == cache, cache_pushes.c.bucket >= since)
                .group_by(cache_pushes.c.pusher).order_by(func.sum(cache_pushes.c.count).desc())
                .limit(limit)).all()
        return [Pusher(p, int(n), int(b)) for p, n, b in rows]

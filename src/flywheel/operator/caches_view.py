"""The caches as operators see them: per cache its size, paths, Bazel entries, traffic from
the database (hit rate over time, bytes served, top pushers), retention, public key and the
exact lines that point nix and Bazel at it; and an inspector for one store path or digest."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from sqlalchemy import func, select

from flywheel.cache.bazel.action_cache import ActionCache
from flywheel.cache.bazel.cas import CasStore
from flywheel.cache.nix.paths import PathService
from flywheel.cache.tenancy import Cache, CacheService
from flywheel.db.engine import Database
from flywheel.db.schema import ac_entries, cas_blobs, cas_members, objects
from flywheel.errors import Invalid
from flywheel.nix.storepath import is_valid_hash_part
from flywheel.operator.traffic import HOUR, CacheTraffic, Pusher, TrafficCounter

DAY = 24 * HOUR
_STORE_PATH = re.compile(r"(?:/nix/store/)?([0-9a-z]{32})(?:-[^/\s]*)?")
_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class CacheFigures:
    name: str
    public: bool
    priority: int
    paths: int
    nar_bytes: int
    ac_entries: int
    ac_bytes: int
    cas_blobs: int
    cas_bytes: int
    retention_seconds: int | None
    public_key: str
    traffic_day: CacheTraffic
    recent_pushes: int     # paths added in the last day


@dataclass(frozen=True)
class CacheDetail:
    figures: CacheFigures
    series: list[tuple[int, CacheTraffic]]   # per hour, the last day
    pushers: list[Pusher]
    nix_conf: list[str]
    bazelrc: list[str]


@dataclass(frozen=True)
class Inspected:
    query: str
    kind: str              # store-path or digest
    found: bool
    narinfo: str | None = None
    action_result: bool = False
    cas_blob_size: int | None = None


def _sum(traffic: dict[str, CacheTraffic]) -> CacheTraffic:
    return CacheTraffic(sum(t.hits for t in traffic.values()),
                        sum(t.misses for t in traffic.values()),
                        sum(t.bytes_out for t in traffic.values()))


class CachesView:
    def __init__(self, db: Database, caches: CacheService, paths: PathService,
                 action_cache: ActionCache, cas: CasStore, traffic: TrafficCounter,
                 base_url: str) -> None:
        self._db = db
        self._caches = caches
        self._paths = paths
        self._ac = action_cache
        self._cas = cas
        self._traffic = traffic
        self._base = base_url

    def figures(self, selected: list[Cache]) -> list[CacheFigures]:
        now = int(time.time())
        day = self._traffic.totals(now - DAY)
        found = []
        with self._db.read() as conn:
            for cache in selected:
                paths, nar_bytes = self._caches.stats(cache)
                ac = conn.execute(select(func.count(), func.coalesce(func.sum(
                    ac_entries.c.size), 0)).where(ac_entries.c.cache_id == cache.id)).one()
                cas = conn.execute(select(func.count(), func.coalesce(func.sum(
                    cas_blobs.c.size), 0)).join(cas_members, cas_members.c.hash ==
                                                cas_blobs.c.hash)
                    .where(cas_members.c.cache_id == cache.id)).one()
                recent = conn.execute(select(func.count()).where(
                    objects.c.cache_id == cache.id,
                    objects.c.created_at >= now - DAY)).scalar_one()
                found.append(CacheFigures(
                    cache.name, cache.is_public, cache.priority, paths, nar_bytes,
                    int(ac[0]), int(ac[1]), int(cas[0]), int(cas[1]), cache.retention_period,
                    cache.public_key, _sum(day.get(cache.name, {})), int(recent)))
        return found

    def detail(self, cache: Cache) -> CacheDetail:
        now = int(time.time())
        figures = self.figures([cache])[0]
        url = f"{self._base}/{cache.name}"
        nix_conf = [f"extra-substituters = {url}",
                    f"extra-trusted-public-keys = {cache.public_key}"]
        bazelrc = [f"build --remote_cache={url}"]
        if not cache.is_public:
            nix_conf.append("netrc-file = /etc/nix/netrc   # machine HOST password <token>")
            bazelrc.append("build --remote_header=Authorization=Bearer <token>")
        return CacheDetail(figures, self._traffic.series(cache.name, now - DAY, HOUR),
                           self._traffic.top_pushers(cache.name, now - 7 * DAY), nix_conf,
                           bazelrc)

    def inspect(self, cache: Cache, query: str) -> Inspected:
        query = query.strip()
        m = _STORE_PATH.fullmatch(query)
        if m and is_valid_hash_part(m.group(1)):
            found = self._paths.narinfo(cache.name, m.group(1))
            text = found.text if found else None
            return Inspected(query, "store-path", text is not None, narinfo=text)
        if _DIGEST.fullmatch(query):
            ac = self._ac.get(cache.name, query)
            held = self._cas.lookup(cache, query)
            blob = held.size if held is not None and not held.lost else None
            has_ac = ac is not None and ac.result is not None
            return Inspected(query, "digest", has_ac or blob is not None,
                             action_result=has_ac, cas_blob_size=blob)
        raise Invalid("give a store path (/nix/store/<hash>-name, or its 32-character hash) or "
                      "a SHA-256 digest (64 hex characters)")

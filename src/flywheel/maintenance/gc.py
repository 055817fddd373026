"""Garbage collection, as its own role: ``flywheel gc`` once, or ``flywheel serve --role gc``
every ``[gc] interval``.

What goes: store paths not asked for within their cache's retention period (unless a pin's
closure holds them); then NARs no path names any more, chunks no NAR uses, CAS blobs no cache
holds, Bazel bytes over the size bound, stored objects no row names, and uploads a crash
left behind. Nothing younger than the grace period is collected: an upload may still be
recording it, or its narinfo may yet follow. Each deletion re-checks, holding the content's
lock (the one an upload holds while it records), that nothing took the content meanwhile,
so an upload that deduplicated against it keeps it; candidate rows are claimed with
``SKIP LOCKED`` on PostgreSQL, so several collectors never wait on one another. Content
found already missing is dropped with its row and logged."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from sqlalchemy import Column, ColumnElement, Connection, Select, and_, delete, exists, select

from flywheel.app.settings import Settings
from flywheel.cache.bazel.size_bound import SizeBound, cas_key, cas_lock
from flywheel.cache.nix.chunks import chunk_key, chunk_lock
from flywheel.cache.nix.nars import nar_blob_key, nar_locks
from flywheel.db.engine import Database, lock
from flywheel.db.schema import (
    cache_nars,
    caches,
    cas_blobs,
    cas_members,
    chunks,
    nar_chunks,
    nars,
    objects,
)
from flywheel.maintenance.pins import protected
from flywheel.storage.base import BlobStore

log = logging.getLogger(__name__)

_BATCH = 200


@dataclass
class GcReport:
    expired_paths: int = 0
    nars: int = 0
    chunks: int = 0
    cas_blobs: int = 0
    orphans: int = 0
    stale_uploads: int = 0
    # Content that was already gone from storage when its row was collected.
    already_missing: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"store paths past retention: {self.expired_paths}",
                f"NARs no path names: {self.nars}",
                f"chunks no NAR uses: {self.chunks}",
                f"CAS blobs no cache holds: {self.cas_blobs}",
                f"stored objects no row names: {self.orphans}",
                f"uploads left by crashes: {self.stale_uploads}",
                f"already missing from storage: {len(self.already_missing)}"]


class Collector:
    def __init__(self, db: Database, blobs: BlobStore, bound: SizeBound, *, grace: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._blobs = blobs
        self._bound = bound
        self._grace = grace
        self._clock = clock

    def collect(self) -> GcReport:
        report = GcReport()
        now = int(self._clock())
        cutoff = now - self._grace
        report.expired_paths = self._expire_paths(now)
        report.nars = self._collect_nars(cutoff, report)
        report.chunks = self._collect_chunks(cutoff, report)
        report.cas_blobs = self._collect_cas(report)
        with self._db.write() as conn:
            self._bound.trim(conn)
        report.orphans = self._collect_orphans(cutoff)
        for upload in self._blobs.stale_uploads(self._grace):
            self._blobs.remove_stale_upload(upload)
            report.stale_uploads += 1
        return report

    def _expire_paths(self, now: int) -> int:
        expired = 0
        with self._db.read() as conn:
            retained = conn.execute(select(caches.c.id, caches.c.retention_period)
                                    .where(caches.c.retention_period.is_not(None))).all()
        for cache_id, period in retained:
            with self._db.write() as conn:
                keep = protected(conn, cache_id)
                old = [h for h in conn.execute(select(objects.c.store_path_hash).where(
                    objects.c.cache_id == cache_id,
                    objects.c.accessed_at < now - int(period))).scalars() if h not in keep]
                for i in range(0, len(old), 500):
                    expired += conn.execute(delete(objects).where(
                        objects.c.cache_id == cache_id,
                        objects.c.store_path_hash.in_(old[i:i + 500]),
                        objects.c.accessed_at < now - int(period))).rowcount
        return expired

    def _candidates(self, conn: Connection, query: Select[Any]) -> list[Any]:
        # Another collector's claimed rows are skipped, not waited for.
        return list(conn.execute(query.with_for_update(skip_locked=True).limit(_BATCH)).all())

    def _collect_nars(self, cutoff: int, report: GcReport) -> int:
        unused = and_(
            nars.c.alias_of.is_(None), nars.c.created_at <= cutoff,
            ~exists().where(objects.c.nar_file == nars.c.file_hash),
            # A cache that uploaded it lately may be about to name it in a narinfo.
            ~exists().where(cache_nars.c.file_hash == nars.c.file_hash,
                            cache_nars.c.created_at > cutoff))
        done = 0
        # A candidate found in use when re-checked no longer matches the query, so every
        # round makes progress.
        while True:
            with self._db.write() as conn:
                batch = self._candidates(conn, select(
                    nars.c.file_hash, nars.c.nar_hash, nars.c.file_size, nars.c.chunked)
                    .where(unused))
                if not batch:
                    return done
                for file_hash, nar_hash, size, chunked in batch:
                    lock(conn, *nar_locks(nar_hash, file_hash))
                    # Re-checked under the lock an upload records with.
                    if not conn.execute(select(exists().where(
                            unused, nars.c.file_hash == file_hash))).scalar():
                        continue
                    conn.execute(delete(nars).where(nars.c.alias_of == file_hash))
                    conn.execute(delete(nars).where(nars.c.file_hash == file_hash))
                    if not chunked:
                        self._delete(nar_blob_key(file_hash), int(size), report)
                    done += 1

    def _collect_chunks(self, cutoff: int, report: GcReport) -> int:
        unused = and_(chunks.c.created_at <= cutoff,
                      ~exists().where(nar_chunks.c.chunk_hash == chunks.c.hash))
        return self._collect_rows(select(chunks.c.hash, chunks.c.stored_size).where(unused),
                                  unused, chunks.c.hash, chunk_lock, chunk_key, report)

    def _collect_cas(self, report: GcReport) -> int:
        # CAS blobs are recorded and their membership added in one transaction, so a blob
        # no cache holds is not in anyone's upload.
        unused = ~exists().where(cas_members.c.hash == cas_blobs.c.hash)

        def freed(conn: Connection, size: int) -> None:
            self._bound.add(conn, -size)

        return self._collect_rows(select(cas_blobs.c.hash, cas_blobs.c.size).where(unused),
                                  unused, cas_blobs.c.hash, cas_lock, cas_key, report, freed)

    def _collect_rows(self, query: Select[Any], unused: ColumnElement[bool],
                      column: Column[str],
                      lock_of: Callable[[str], str], key_of: Callable[[str], str],
                      report: GcReport,
                      freed: Callable[[Connection, int], None] | None = None) -> int:
        done = 0
        while True:
            with self._db.write() as conn:
                batch = self._candidates(conn, query)
                if not batch:
                    return done
                for hash_, size in batch:
                    lock(conn, lock_of(hash_))
                    row = and_(unused, column == hash_)
                    if not conn.execute(select(exists().where(row))).scalar():
                        continue
                    conn.execute(delete(column.table).where(column == hash_))
                    self._delete(key_of(hash_), int(size), report)
                    if freed is not None:
                        freed(conn, int(size))
                    done += 1

    def _collect_orphans(self, cutoff: int) -> int:
        named = {"nar/": lambda h: exists().where(nars.c.file_hash == h, nars.c.alias_of.is_(None),
                                                  nars.c.chunked.is_(False)),
                 "cas/": lambda h: exists().where(cas_blobs.c.hash == h),
                 "chunk/": lambda h: exists().where(chunks.c.hash == h)}
        removed = 0
        for key in self._blobs.iter_keys():
            prefix = key[:key.index("/") + 1] if "/" in key else ""
            row = named.get(prefix)
            if row is None:
                continue  # not ours to judge
            if (self._blobs.modified(key) or 0) > cutoff:
                continue
            with self._db.write() as conn:
                lock(conn, f"blob:{key}")
                if conn.execute(select(row(key.removeprefix(prefix)))).scalar():
                    continue
                self._blobs.delete(key)
                removed += 1
        return removed

    def _delete(self, key: str, size: int, report: GcReport) -> None:
        if self._blobs.size(key) is None:
            log.warning("%s was already missing from storage; its row is dropped", key)
            report.already_missing.append(key)
        self._blobs.delete(key)


def collect_forever(settings: Settings) -> None:
    """The gc role: collect every ``[gc] interval`` seconds until told to stop."""
    from flywheel.app.services import Services

    stop = threading.Event()

    def on_signal(sig: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping after this collection", signal.Signals(sig).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    services = Services.open(settings)
    collector = Collector(services.db, services.blobs, services.bazel_bound,
                          grace=settings.gc.grace)
    try:
        log.info("collecting garbage every %ds in %s (grace %ds)", settings.gc.interval,
                 services.blobs.describe(), settings.gc.grace)
        while not stop.is_set():
            try:
                report = collector.collect()
                log.info("garbage collected: %s", "; ".join(report.lines()))
            except Exception:  # the next round tries again; the role keeps running
                log.exception("garbage collection failed")
            stop.wait(settings.gc.interval)
    finally:
        services.close()

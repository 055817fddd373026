"""Bazel remote cache: a global, verified CAS and a per-cache action cache, size-bounded
with least-recently-used eviction."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

from sqlalchemy import Connection, Engine, bindparam, delete, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite

from flywheel.bazel.action_result import (
    ActionResultError,
    parse_action_result,
    referenced_digests,
    tree_digests,
    tree_file_digests,
)
from flywheel.bazel.digests import EMPTY_SHA256, Digest
from flywheel.cache.tenancy import Cache
from flywheel.codecs import CodecError, StreamDecoder
from flywheel.db.hot import HotReads
from flywheel.db.schema import ac_entries, bazel_usage, caches, cas_blobs
from flywheel.storage.base import BlobStore

# Reads refresh last-access times at most this often per entry: LRU at minute resolution
# costs one write per minute per hot entry instead of one per hit.
TOUCH_INTERVAL_MS = 60_000
_EVICT_BATCH = 64


class BazelError(ValueError):
    """A request the cache refuses; the message is safe to return to the client."""


class DigestMismatch(BazelError):
    pass


class CacheFull(BazelError):
    """The blob cannot fit even after evicting everything older (HTTP 507)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def cas_key(hash_: str) -> str:
    return f"cas/{hash_}"


@dataclass(frozen=True)
class AcLookup:
    cache_public: bool
    cache_id: int | None
    result: bytes | None


_AC_BY_NAME = (
    select(caches.c.is_public, caches.c.id, ac_entries.c.result, ac_entries.c.accessed_at)
    .select_from(caches.outerjoin(ac_entries, (ac_entries.c.cache_id == caches.c.id)
                                  & (ac_entries.c.action_hash == bindparam("h"))))
    .where(caches.c.name == bindparam("cache"))
)
_CAS_SIZE = select(cas_blobs.c.size, cas_blobs.c.accessed_at).where(
    cas_blobs.c.hash == bindparam("h"))


class _HashingSink:
    """Receives (decompressed) blob bytes and forwards them to storage while hashing."""

    def __init__(self, write: Callable[[bytes], None], limit: int) -> None:
        self._write = write
        self._limit = limit
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._limit:
            raise DigestMismatch("blob is larger than its digest says")
        self.sha.update(data)
        self._write(data)


class BazelService:
    def __init__(self, engine: Engine, reads: HotReads, blobs: BlobStore,
                 max_size: int | None, clock: Callable[[], int] = now_ms) -> None:
        self._engine = engine
        self._blobs = blobs
        self._reads = reads
        self.max_size = max_size
        self._clock = clock
        self._ac_query = reads.prepare(_AC_BY_NAME)
        self._cas_query = reads.prepare(_CAS_SIZE)

    # -- CAS --

    def cas_size(self, hash_: str) -> int | None:
        """The stored size, refreshing last access; the empty blob always exists."""
        if hash_ == EMPTY_SHA256:
            return 0
        row = self._reads.run(self._cas_query, {"h": hash_})
        if row is None:
            return None
        self._touch_cas([(hash_, row[1])])
        return int(row[0])

    def cas_path(self, hash_: str) -> str | None:
        return self._blobs.local_path(cas_key(hash_))

    def open_cas(self, hash_: str) -> BinaryIO:
        return self._blobs.open(cas_key(hash_))

    def find_missing(self, digests: Iterable[Digest]) -> list[Digest]:
        wanted = [d for d in digests if not d.is_empty]
        present: dict[str, int] = {}
        now = self._clock()
        stale: list[str] = []
        with self._engine.connect() as conn:
            for i in range(0, len(wanted), 500):
                chunk = sorted({d.hash for d in wanted[i:i + 500]})
                for h, size, accessed in conn.execute(
                        select(cas_blobs.c.hash, cas_blobs.c.size, cas_blobs.c.accessed_at)
                        .where(cas_blobs.c.hash.in_(chunk))):
                    present[h] = size
                    if now - accessed > TOUCH_INTERVAL_MS:
                        stale.append(h)
        if stale:
            self._set_accessed(cas_blobs, cas_blobs.c.hash, stale, now)
        return [d for d in wanted if present.get(d.hash) != d.size]

    async def put_cas(self, hash_: str, size: int | None, chunks: AsyncIterator[bytes],
                      compressor: str = "identity") -> None:
        """Store a blob streamed in ``compressor`` form, verifying its hash, and its size
        where the client declared one."""
        if size is not None:
            self.check_fits(size)
        limit = size if size is not None else (self.max_size or 1 << 50)
        writer = self._blobs.writer()
        try:
            sink = _HashingSink(writer.write, limit)
            decoder = StreamDecoder("none" if compressor == "identity" else compressor,
                                    sink.write)
            try:
                async for chunk in chunks:
                    decoder.feed(chunk)
                decoder.finish()
            except CodecError as e:
                raise BazelError(str(e)) from None
            digest = Digest(hash_, sink.size if size is None else size)
            self._verify(digest, sink.sha.hexdigest(), sink.size)
            if not digest.is_empty:
                self._commit_cas(digest, writer)
        finally:
            writer.abort()

    def put_cas_bytes(self, digest: Digest, data: bytes) -> None:
        if digest.is_empty and not data:
            return
        self._verify(digest, hashlib.sha256(data).hexdigest(), len(data))
        self.check_fits(digest.size)
        writer = self._blobs.writer()
        try:
            writer.write(data)
            self._commit_cas(digest, writer)
        finally:
            writer.abort()

    def has_cas(self, digest: Digest) -> bool:
        return digest.is_empty or self.cas_size(digest.hash) == digest.size

    @staticmethod
    def _verify(digest: Digest, actual_hash: str, actual_size: int) -> None:
        if actual_size != digest.size:
            raise DigestMismatch(f"blob is {actual_size} bytes, its digest says {digest.size}")
        if actual_hash != digest.hash:
            raise DigestMismatch(f"blob hashes to {actual_hash}, not {digest.hash}")

    def check_fits(self, size: int) -> None:
        if self.max_size is not None and size > self.max_size:
            raise CacheFull(f"blob of {size} bytes exceeds the cache's size bound "
                            f"({self.max_size} bytes)")

    def _commit_cas(self, digest: Digest, writer: Any) -> None:
        now = self._clock()
        with self._engine.begin() as conn:
            exists = conn.execute(select(cas_blobs.c.size)
                                  .where(cas_blobs.c.hash == digest.hash)).first()
            if exists is not None:
                return
            evicted = self._make_room(conn, digest.size)
            writer.commit(cas_key(digest.hash))
            added = conn.execute(_insert_ignore(conn, cas_blobs).values(
                hash=digest.hash, size=digest.size, created_at=now, accessed_at=now)).rowcount
            if added:  # a concurrent upload of the same blob may have counted it already
                conn.execute(update(bazel_usage).where(bazel_usage.c.id == 1)
                             .values(bytes=bazel_usage.c.bytes + digest.size))
        self._delete_blobs(evicted)

    # -- action cache --

    def get_ac(self, cache_name: str, action_hash: str) -> AcLookup | None:
        """The entry if every blob it references is in the CAS; otherwise a miss, so Bazel
        is never handed a result it cannot download."""
        row = self._reads.run(self._ac_query, {"cache": cache_name, "h": action_hash})
        if row is None:
            return None
        is_public, cache_id, data, accessed = row
        if data is None:
            return AcLookup(bool(is_public), cache_id, None)
        data = bytes(data)
        if not self._downloadable(data):
            return AcLookup(bool(is_public), cache_id, None)
        if self._clock() - accessed > TOUCH_INTERVAL_MS:
            with self._engine.begin() as conn:
                conn.execute(update(ac_entries).where(
                    ac_entries.c.cache_id == cache_id, ac_entries.c.action_hash == action_hash)
                    .values(accessed_at=self._clock()))
        return AcLookup(bool(is_public), cache_id, data)

    def _downloadable(self, data: bytes) -> bool:
        """Whether every blob the result names, down to the files inside its output
        directories, is in the CAS."""
        try:
            result = parse_action_result(data)
            needed = referenced_digests(result)
            if needed and self.find_missing(needed):
                return False
            for tree in tree_digests(result):
                with self.open_cas(tree.hash) as f:
                    files = tree_file_digests(f.read())
                if files and self.find_missing(files):
                    return False
        except (ActionResultError, FileNotFoundError):
            return False
        return True

    def put_ac(self, cache: Cache, action_hash: str, data: bytes) -> None:
        try:
            parse_action_result(data)
        except ActionResultError as e:
            raise BazelError(str(e)) from None
        self.check_fits(len(data))
        now = self._clock()
        with self._engine.begin() as conn:
            old = conn.execute(select(ac_entries.c.size).where(
                ac_entries.c.cache_id == cache.id,
                ac_entries.c.action_hash == action_hash)).scalar()
            evicted = self._make_room(conn, len(data) - (old or 0))
            if old is not None:
                conn.execute(delete(ac_entries).where(ac_entries.c.cache_id == cache.id,
                                                      ac_entries.c.action_hash == action_hash))
            conn.execute(ac_entries.insert().values(
                cache_id=cache.id, action_hash=action_hash, size=len(data), result=data,
                created_at=now, accessed_at=now))
            conn.execute(update(bazel_usage).where(bazel_usage.c.id == 1)
                         .values(bytes=bazel_usage.c.bytes + len(data) - (old or 0)))
        self._delete_blobs(evicted)

    # -- size bound --

    def usage(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(bazel_usage.c.bytes)
                                    .where(bazel_usage.c.id == 1)).scalar() or 0)

    def _make_room(self, conn: Connection, needed: int) -> list[str]:
        """Evict least-recently-used entries until ``needed`` more bytes fit; returns the
        CAS keys whose files to delete once the transaction has committed."""
        if self.max_size is None or needed <= 0:
            return []
        if needed > self.max_size:
            raise CacheFull(f"{needed} bytes exceed the cache's size bound "
                            f"({self.max_size} bytes)")
        usage = int(conn.execute(select(bazel_usage.c.bytes)
                                 .where(bazel_usage.c.id == 1)).scalar() or 0)
        doomed: list[str] = []
        while usage + needed > self.max_size:
            candidates = conn.execute(
                select(literal("cas").label("kind"), cas_blobs.c.hash.label("key"),
                       literal(0).label("cache_id"), cas_blobs.c.size, cas_blobs.c.accessed_at)
                .union_all(select(literal("ac"), ac_entries.c.action_hash,
                                  ac_entries.c.cache_id, ac_entries.c.size,
                                  ac_entries.c.accessed_at))
                .order_by("accessed_at").limit(_EVICT_BATCH)).all()
            if not candidates:
                raise CacheFull("the cache is full and nothing is left to evict")
            for kind, key, cache_id, size, _ in candidates:
                if usage + needed <= self.max_size:
                    break
                if kind == "cas":
                    conn.execute(delete(cas_blobs).where(cas_blobs.c.hash == key))
                    doomed.append(cas_key(key))
                else:
                    conn.execute(delete(ac_entries).where(ac_entries.c.cache_id == cache_id,
                                                          ac_entries.c.action_hash == key))
                usage -= size
                conn.execute(update(bazel_usage).where(bazel_usage.c.id == 1)
                             .values(bytes=bazel_usage.c.bytes - size))
        return doomed

    def _delete_blobs(self, keys: list[str]) -> None:
        for key in keys:
            self._blobs.delete(key)

    def _touch_cas(self, rows: list[tuple[str, int]]) -> None:
        now = self._clock()
        stale = [h for h, accessed in rows if now - accessed > TOUCH_INTERVAL_MS]
        if stale:
            self._set_accessed(cas_blobs, cas_blobs.c.hash, stale, now)

    def _set_accessed(self, table: Any, column: Any, keys: list[str], now: int) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(table).where(column.in_(keys)).values(accessed_at=now))

    # -- status --

    def stats(self) -> dict[str, Any]:
        with self._engine.connect() as conn:
            cas_count, cas_bytes = conn.execute(
                select(func.count(), func.coalesce(func.sum(cas_blobs.c.size), 0))).one()
            per_cache = {name: (int(n), int(b)) for name, n, b in conn.execute(
                select(caches.c.name, func.count(ac_entries.c.action_hash),
                       func.coalesce(func.sum(ac_entries.c.size), 0))
                .select_from(caches.outerjoin(ac_entries, ac_entries.c.cache_id == caches.c.id))
                .group_by(caches.c.name))}
        return {"cas_blobs": int(cas_count), "cas_bytes": int(cas_bytes),
                "max_size": self.max_size, "used_bytes": self.usage(),
                "action_cache": per_cache}


def _insert_ignore(conn: Connection, table: Any) -> Any:
    """INSERT that leaves an existing row alone (a concurrent upload of the same blob)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()

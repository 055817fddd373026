"""The content-addressable store: blobs verified by hash and stored once, visible per cache.

A blob is readable, listed or reported present through a cache only if that cache holds
it: it was uploaded to the cache (bytes sent and verified), or the caller may read another
cache holding it. Storage that lost a blob fails closed: the blob is reported missing and
forgotten, so the client uploads it again."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import Connection, bindparam, delete, exists, select, update

from flywheel.bazel.digests import EMPTY_SHA256, MAX_BLOB_SIZE, Digest
from flywheel.cache.bazel.size_bound import SizeBound, cas_key, cas_lock
from flywheel.cache.tenancy import Cache
from flywheel.codecs import CodecError, StreamDecoder
from flywheel.db.engine import Database, insert_ignore, lock
from flywheel.db.schema import caches, cas_blobs, cas_members
from flywheel.errors import Invalid, StorageFull, Unavailable
from flywheel.storage.base import BlobStore
from flywheel.storage.serving import Stream, stream_of

log = logging.getLogger(__name__)

# Reads refresh last-access times at most this often per entry: LRU at minute resolution
# costs one write per minute per hot entry instead of one per hit.
TOUCH_INTERVAL_MS = 60_000
_PLACE_ATTEMPTS = 3
_IN_CHUNK = 500

# May the caller pull from the cache of this name (and visibility)?
Readable = Callable[[str, bool], bool]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


_MEMBER = (
    select(cas_blobs.c.size, cas_blobs.c.accessed_at)
    .join(cas_members, cas_members.c.hash == cas_blobs.c.hash)
    .where(cas_members.c.cache_id == bindparam("cache_id"),
           cas_blobs.c.hash == bindparam("h"))
)


class _HashingSink:
    """Receives (decompressed) blob bytes and forwards them to storage while hashing."""

    def __init__(self, write: Callable[[bytes], object], limit: int,
                 too_big: Callable[[], Exception]) -> None:
        self._write = write
        self._limit = limit
        self._too_big = too_big
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._limit:
            raise self._too_big()
        self.sha.update(data)
        self._write(data)


@dataclass(frozen=True)
class Held:
    hash: str
    size: int
    lost: bool   # the row says held, but storage no longer has the bytes intact
    stale: bool  # last access is old enough to be worth refreshing


class CasStore:
    def __init__(self, db: Database, blobs: BlobStore, bound: SizeBound,
                 clock: Callable[[], int] = now_ms) -> None:
        self._db = db
        self._blobs = blobs
        self.bound = bound
        self._clock = clock
        self._member_query = db.hot.prepare(_MEMBER)

    # -- presence --

    def lookup(self, cache: Cache, hash_: str) -> Held | None:
        """Whether the cache holds the blob, reading only (one indexed query and a stat), so
        it can run on the request path; ``settle`` does the bookkeeping it calls for."""
        if hash_ == EMPTY_SHA256:
            return Held(hash_, 0, lost=False, stale=False)
        row = self._db.hot.run(self._member_query, {"cache_id": cache.id, "h": hash_})
        if row is None:
            return None
        size = int(row[0])
        if not self._intact(Digest(hash_, size)):
            return Held(hash_, size, lost=True, stale=False)
        return Held(hash_, size, lost=False, stale=self._clock() - row[1] > TOUCH_INTERVAL_MS)

    def settle(self, held: Held) -> None:
        """Refresh a blob's last access, or forget a blob storage lost (writes)."""
        if held.lost:
            self.forget([held.hash])
        elif held.stale:
            self._touch([held.hash])

    def stored_size(self, cache: Cache, digest: Digest) -> int | None:
        """The blob's size if the cache holds it intact; refreshes last access. A blob
        storage lost is forgotten and reported absent."""
        held = self.lookup(cache, digest.hash)
        if held is None:
            return None
        self.settle(held)
        return None if held.lost or held.size != digest.size else held.size

    def has(self, cache: Cache, digest: Digest) -> bool:
        return self.stored_size(cache, digest) is not None

    def find_missing(self, cache: Cache, digests: Iterable[Digest]) -> list[Digest]:
        """The digests the cache does not hold intact, in request order."""
        wanted = [d for d in digests if not d.is_empty]
        held: dict[str, tuple[int, int]] = {}
        with self._db.read() as conn:
            for chunk in _chunks(sorted({d.hash for d in wanted})):
                for h, size, accessed in conn.execute(
                        select(cas_blobs.c.hash, cas_blobs.c.size, cas_blobs.c.accessed_at)
                        .join(cas_members, cas_members.c.hash == cas_blobs.c.hash)
                        .where(cas_members.c.cache_id == cache.id,
                               cas_blobs.c.hash.in_(chunk))):
                    held[h] = (size, accessed)
        lost = [h for h, (size, _) in held.items() if not self._intact(Digest(h, size))]
        if lost:
            self.forget(lost)
        now = self._clock()
        stale = [h for h, (_, accessed) in held.items()
                 if h not in lost and now - accessed > TOUCH_INTERVAL_MS]
        if stale:
            self._touch(stale)
        return [d for d in wanted
                if d.hash in lost or held.get(d.hash, (None, 0))[0] != d.size]

    def holds_all(self, cache: Cache, digests: Sequence[Digest]) -> bool:
        return not self.find_missing(cache, digests)

    def _intact(self, digest: Digest) -> bool:
        return self._blobs.size(cas_key(digest.hash)) == digest.size

    # -- reads --

    def open(self, cache: Cache, digest: Digest) -> BinaryIO | None:
        """The blob's bytes if the cache holds it intact; None otherwise."""
        if self.stored_size(cache, digest) is None:
            return None
        try:
            return self._blobs.open(cas_key(digest.hash))
        except FileNotFoundError:
            self.forget([digest.hash])
            return None

    def read(self, cache: Cache, digest: Digest) -> bytes | None:
        if digest.is_empty:
            return b""
        f = self.open(cache, digest)
        if f is None:
            return None
        with f:
            data = f.read(digest.size + 1)
        if len(data) != digest.size:
            self.forget([digest.hash])
            return None
        return data

    def local_path(self, hash_: str) -> str | None:
        return self._blobs.local_path(cas_key(hash_))

    def content(self, cache: Cache, digest: Digest) -> Stream | None:
        """The blob as a stream, where there is no local file to send; None if the cache
        does not hold it intact."""
        source = self.open(cache, digest)
        if source is None:
            return None
        return stream_of(iter(lambda: source.read(1 << 20), b""), digest.size, source.close)

    # -- writes --

    def adopt(self, cache: Cache, digest: Digest, readable: Readable) -> bool:
        """Add a blob stored for other caches to this one without its bytes, if the caller
        may read a cache that holds it intact. False when the bytes must be sent."""
        if digest.is_empty or self.has(cache, digest):
            return True
        with self._db.read() as conn:
            holders = conn.execute(
                select(caches.c.name, caches.c.is_public).where(exists().where(
                    cas_members.c.cache_id == caches.c.id,
                    cas_members.c.hash == digest.hash))).all()
            size = conn.execute(select(cas_blobs.c.size)
                                .where(cas_blobs.c.hash == digest.hash)).scalar()
        if size != digest.size or not self._intact(digest) or \
                not any(readable(name, bool(public)) for name, public in holders):
            return False
        with self._db.write() as conn:
            # Deletions hold this lock with the row gone: a row seen here keeps its bytes.
            lock(conn, cas_lock(digest.hash))
            if conn.execute(select(cas_blobs.c.hash)
                            .where(cas_blobs.c.hash == digest.hash)).first() is None:
                return False
            _add_member(conn, cache, digest.hash)
        return True

    def put(self, cache: Cache, digest: Digest | None, chunks: Iterable[bytes],
            compressor: str = "identity", expected_hash: str | None = None) -> Digest:
        """Store a blob streamed in ``compressor`` form, verifying its hash (and its size
        where the digest is known); the cache holds it afterwards. Returns its digest."""
        if digest is not None:
            self.bound.check_fits(digest.size)
            limit, expected_hash = digest.size, digest.hash

            def too_big() -> Exception:
                return Invalid("blob is larger than its digest says")
        else:
            # A chunked upload of unknown size ends where the size bound does.
            limit = self.bound.max_size if self.bound.max_size is not None else MAX_BLOB_SIZE

            def too_big() -> Exception:
                return StorageFull(f"blob exceeds the Bazel cache's size bound ({limit} bytes)")
        writer = self._blobs.writer()
        try:
            sink = _HashingSink(writer.write, limit, too_big)
            decoder = StreamDecoder("none" if compressor == "identity" else compressor,
                                    sink.write)
            try:
                for chunk in chunks:
                    decoder.feed(chunk)
                decoder.finish()
            except CodecError as e:
                raise Invalid(str(e)) from None
            actual = Digest(sink.sha.hexdigest(), sink.size)
            if digest is not None and actual.size != digest.size:
                raise Invalid(f"blob is {actual.size} bytes, its digest says {digest.size}")
            if expected_hash is not None and actual.hash != expected_hash:
                raise Invalid(f"blob hashes to {actual.hash}, not {expected_hash}")
            if not actual.is_empty:
                writer.finish()
                self._record(cache, actual, writer.place)
            return actual
        finally:
            writer.close()

    def put_bytes(self, cache: Cache, digest: Digest, data: bytes) -> None:
        self.put(cache, digest, [data])

    def _record(self, cache: Cache, digest: Digest, place: Callable[[str], None]) -> None:
        key = cas_key(digest.hash)
        for _ in range(_PLACE_ATTEMPTS):
            with self._db.read() as conn:
                size = conn.execute(select(cas_blobs.c.size)
                                    .where(cas_blobs.c.hash == digest.hash)).scalar()
            if size != digest.size or not self._intact(digest):
                place(key)
            now = self._clock()
            with self._db.write() as conn:
                # Blobs are deleted only under this lock with their row gone, so a blob seen
                # here stays for the row written below.
                lock(conn, cas_lock(digest.hash))
                if not self._intact(digest):
                    continue
                known = conn.execute(select(cas_blobs.c.size)
                                     .where(cas_blobs.c.hash == digest.hash)).scalar()
                if known is None:
                    self.bound.add(conn, digest.size)
                    conn.execute(cas_blobs.insert().values(
                        hash=digest.hash, size=digest.size, created_at=now, accessed_at=now))
                _add_member(conn, cache, digest.hash)
            return
        raise Unavailable("the blob could not be stored because storage changed under it; "
                          "try again")

    def forget(self, hashes: Sequence[str]) -> None:
        """Drop blobs storage no longer holds intact (lost behind the server's back): they
        read as missing everywhere until uploaded again."""
        for h in hashes:
            log.error("CAS blob %s is missing or short in storage; forgotten until uploaded "
                      "again", h)
        with self._db.write() as conn:
            lock(conn, *(cas_lock(h) for h in hashes))
            for chunk in _chunks(list(hashes)):
                for h, size in conn.execute(select(cas_blobs.c.hash, cas_blobs.c.size)
                                            .where(cas_blobs.c.hash.in_(chunk))).all():
                    if self._intact(Digest(h, size)):
                        continue  # uploaded again meanwhile
                    conn.execute(delete(cas_blobs).where(cas_blobs.c.hash == h))
                    self._blobs.delete(cas_key(h))
                    self.bound.add(conn, -int(size))

    def _touch(self, hashes: list[str]) -> None:
        now = self._clock()
        with self._db.write() as conn:
            for chunk in _chunks(hashes):
                conn.execute(update(cas_blobs).where(cas_blobs.c.hash.in_(chunk))
                             .values(accessed_at=now))


def _add_member(conn: Connection, cache: Cache, hash_: str) -> None:
    conn.execute(insert_ignore(conn, cas_members).values(cache_id=cache.id, hash=hash_))


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), _IN_CHUNK):
        yield items[i:i + _IN_CHUNK]

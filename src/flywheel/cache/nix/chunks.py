"""Chunk-level deduplication of large NARs: content-defined chunks (FastCDC), each stored
once by the SHA-256 of its bytes and compressed with zstd, so two versions of a closure
that differ slightly share most of their bytes. A chunked NAR is read back by fetching its
chunks several at a time ahead of the one being sent, never one round trip per chunk.

A chunk is "ensured" (stored if absent, its row's time refreshed) under its lock before
any NAR names it; garbage collection takes that lock and leaves chunks refreshed within
its grace period, so a chunk an upload just reused is not collected under it."""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from pyfastcdc import FastCDC
from sqlalchemy import Connection, delete, exists, insert, select, update

from flywheel.codecs import StreamDecoder, zstd_compress
from flywheel.db.engine import Database, lock
from flywheel.db.schema import chunks, nar_chunks
from flywheel.storage.base import BlobStore

# Chunks fetched ahead of the one being sent (and checked at once): an object store answers
# each request after a round trip, so throughput comes from having many in flight.
PREFETCH = 16


def chunk_key(hash_: str) -> str:
    return f"chunk/{hash_}"


def chunk_lock(hash_: str) -> str:
    return f"blob:{chunk_key(hash_)}"


@dataclass(frozen=True)
class ChunkRef:
    hash: str
    size: int
    stored_size: int


class Chunker:
    """Cuts a stream fed in pieces of any size into the same chunks FastCDC would cut the
    whole stream into: a cut point depends only on the bytes from the chunk's start to at
    most ``max_size`` past it, so a chunk is final once that much follows its start."""

    def __init__(self, avg_size: int) -> None:
        self._cdc = FastCDC(avg_size)
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        if len(self._buffer) < 2 * self._cdc.max_size:
            return []
        buffer = bytes(self._buffer)
        final: list[bytes] = []
        done = 0
        for chunk in self._cdc.cut_buf(buffer):
            if len(buffer) - chunk.offset < self._cdc.max_size:
                break
            final.append(bytes(chunk.data))
            done = chunk.offset + chunk.length
        self._buffer = bytearray(buffer[done:])
        return final

    def finish(self) -> list[bytes]:
        rest = [bytes(chunk.data) for chunk in self._cdc.cut_buf(bytes(self._buffer))]
        self._buffer = bytearray()
        return rest


class ChunkStore:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self._db = db
        self._blobs = blobs
        self._pool = ThreadPoolExecutor(PREFETCH, thread_name_prefix="flywheel-chunks")

    def ensure(self, data: bytes) -> tuple[ChunkRef, bool]:
        """Store a chunk unless it is stored already; either way it is protected from
        garbage collection for the grace period from now. True when it was new."""
        hash_ = hashlib.sha256(data).hexdigest()
        key = chunk_key(hash_)
        with self._db.read() as conn:
            row = conn.execute(select(chunks.c.stored_size)
                               .where(chunks.c.hash == hash_)).scalar()
        compressed = None
        if row is None or self._blobs.size(key) != row:
            compressed = zstd_compress(data, 3)
            self._blobs.put(key, compressed)
        now = int(time.time())
        with self._db.write() as conn:
            lock(conn, chunk_lock(hash_))
            stored = conn.execute(select(chunks.c.stored_size)
                                  .where(chunks.c.hash == hash_)).scalar()
            if stored is not None and self._blobs.size(key) == stored:
                conn.execute(update(chunks).where(chunks.c.hash == hash_)
                             .values(created_at=now))
                return ChunkRef(hash_, len(data), int(stored)), False
            if compressed is None:
                compressed = zstd_compress(data, 3)
            # Collected meanwhile (or never stored): store it again under the lock.
            self._blobs.put(key, compressed)
            if stored is None:
                conn.execute(insert(chunks).values(hash=hash_, size=len(data),
                                                   stored_size=len(compressed), created_at=now))
            else:
                conn.execute(update(chunks).where(chunks.c.hash == hash_).values(
                    stored_size=len(compressed), created_at=now))
            return ChunkRef(hash_, len(data), len(compressed)), stored is None

    def discard(self, hashes: list[str]) -> None:
        """Remove chunks no NAR names (those an upload that then failed stored)."""
        for hash_ in hashes:
            with self._db.write() as conn:
                lock(conn, chunk_lock(hash_))
                if conn.execute(select(exists().where(nar_chunks.c.chunk_hash == hash_))
                                ).scalar():
                    continue
                conn.execute(delete(chunks).where(chunks.c.hash == hash_))
                self._blobs.delete(chunk_key(hash_))

    @staticmethod
    def link(conn: Connection, file_hash: str, refs: list[ChunkRef]) -> None:
        """Name ``refs`` as the chunks of the NAR ``file_hash``, in order."""
        conn.execute(nar_chunks.delete().where(nar_chunks.c.file_hash == file_hash))
        for i in range(0, len(refs), 1000):
            conn.execute(insert(nar_chunks), [
                {"file_hash": file_hash, "seq": seq, "chunk_hash": r.hash, "size": r.size}
                for seq, r in enumerate(refs[i:i + 1000], start=i)])

    def refs(self, file_hash: str) -> list[ChunkRef]:
        with self._db.read() as conn:
            return [ChunkRef(h, int(size), int(stored)) for h, size, stored in conn.execute(
                select(nar_chunks.c.chunk_hash, nar_chunks.c.size, chunks.c.stored_size)
                .join(chunks, chunks.c.hash == nar_chunks.c.chunk_hash)
                .where(nar_chunks.c.file_hash == file_hash).order_by(nar_chunks.c.seq))]

    def all_present(self, refs: list[ChunkRef]) -> bool:
        """Whether storage holds every chunk intact (checked several at a time)."""
        sizes = self._pool.map(lambda r: self._blobs.size(chunk_key(r.hash)), refs)
        return all(size == r.stored_size for size, r in zip(sizes, refs, strict=True))

    def read(self, refs: list[ChunkRef]) -> Generator[bytes, None, None]:
        """The chunks' bytes in order, ``PREFETCH`` chunks fetched ahead."""
        pending: deque[Future[bytes]] = deque()
        upcoming = iter(refs)
        try:
            for ref in upcoming:
                pending.append(self._pool.submit(self._fetch, ref))
                if len(pending) >= PREFETCH:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()

    def _fetch(self, ref: ChunkRef) -> bytes:
        compressed = self._blobs.get(chunk_key(ref.hash))
        out: list[bytes] = []
        decoder = StreamDecoder("zstd", out.append)
        decoder.feed(compressed)
        decoder.finish()
        data = b"".join(out)
        if len(data) != ref.size:
            raise OSError(f"chunk {ref.hash} holds {len(data)} bytes, not {ref.size}")
        return data

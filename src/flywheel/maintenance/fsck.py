"""Consistency between metadata and stored content (local files or a bucket, SQLite or
PostgreSQL), and cleanup of what a crash leaves.

Every stored NAR, chunk and CAS blob is read back and hashed (``sample`` checks a random
fraction of them, for big stores); a chunked NAR is checked through its chunks."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection, delete, exists, select

from flywheel.cache.bazel.size_bound import SizeBound, cas_key, cas_lock
from flywheel.cache.nix.chunks import chunk_key, chunk_lock
from flywheel.cache.nix.nars import nar_blob_key, nar_locks
from flywheel.codecs import CodecError, StreamDecoder
from flywheel.db.engine import Database, lock
from flywheel.db.schema import cas_blobs, chunks, nar_chunks, nars, objects
from flywheel.nix.base32 import encode as b32encode
from flywheel.storage.base import BlobStore

_READ = 1 << 20


@dataclass
class FsckReport:
    stale_uploads: list[str] = field(default_factory=list)
    orphan_blobs: list[str] = field(default_factory=list)
    unreferenced_nars: list[str] = field(default_factory=list)
    # Missing, short, or not what their hash says.
    missing_content: list[str] = field(default_factory=list)
    missing_cas: list[str] = field(default_factory=list)
    broken_chunks: list[str] = field(default_factory=list)
    # (recorded total, what the rows add up to) when they differ.
    bazel_usage: tuple[int, int] | None = None
    # Aliases are bookkeeping for uploads in flight; expiring them is routine, not a fault.
    expired_aliases: list[str] = field(default_factory=list)
    checked: int = 0
    repaired: bool = False

    @property
    def clean(self) -> bool:
        return not (self.stale_uploads or self.orphan_blobs or self.unreferenced_nars
                    or self.missing_content or self.missing_cas or self.broken_chunks
                    or self.bazel_usage)


def _sha256(blobs: BlobStore, key: str, size: int,
            decompress: bool = False) -> hashlib._Hash | None:
    """The SHA-256 of the blob's (decompressed) bytes, None if it is missing or the
    wrong size."""
    digest = hashlib.sha256()
    seen = 0

    def take(data: bytes) -> None:
        nonlocal seen
        seen += len(data)
        digest.update(data)

    decoder = StreamDecoder("zstd", take) if decompress else None
    try:
        with blobs.open(key) as f:
            for piece in iter(lambda: f.read(_READ), b""):
                if decoder is not None:
                    decoder.feed(piece)
                else:
                    take(piece)
        if decoder is not None:
            decoder.finish()
    except (FileNotFoundError, CodecError):
        return None
    return digest if seen == size else None


def fsck(db: Database, blobs: BlobStore, bound: SizeBound, *, repair: bool,
         grace_seconds: int, sample: float = 1.0,
         pick: Callable[[], float] = random.random) -> FsckReport:
    """Find (and with ``repair`` remove) what is inconsistent:

    - temp files of uploads that never committed (a killed server), older than the grace;
    - stored objects no metadata row names (a crash between storing and recording);
    - NARs no narinfo names any more, older than the grace, with their bytes;
    - NARs, chunks and CAS blobs whose stored bytes are missing, short or corrupt: dropped
      (with the paths and NARs that need them), so clients get a clean miss and upload
      them again;
    - a Bazel usage total that differs from what its rows add up to."""
    report = FsckReport(repaired=repair)
    cutoff = int(time.time()) - grace_seconds
    report.stale_uploads = list(blobs.stale_uploads(grace_seconds))
    with db.read() as conn:
        rows = conn.execute(select(nars.c.file_hash, nars.c.alias_of, nars.c.file_size,
                                   nars.c.created_at, nars.c.chunked)).all()
        referenced = {r[0] for r in conn.execute(select(objects.c.nar_file).distinct())}
        cas_rows = dict(conn.execute(select(cas_blobs.c.hash, cas_blobs.c.size)).all())
        chunk_rows = {h: (int(size), int(stored)) for h, size, stored in conn.execute(
            select(chunks.c.hash, chunks.c.size, chunks.c.stored_size))}
        usage, stored = bound.usage(conn), bound.stored(conn)
    plain = {fh for fh, alias, _s, _c, chunked in rows if alias is None and not chunked}
    alias_targets = {alias for _fh, alias, _s, _c, _ch in rows if alias is not None}
    named: dict[str, Callable[[str], bool]] = {
        "cas/": cas_rows.__contains__, "nar/": plain.__contains__,
        "chunk/": chunk_rows.__contains__}
    for key in blobs.iter_keys():
        prefix = key[:key.index("/") + 1] if "/" in key else ""
        check = named.get(prefix)
        if check is not None and not check(key.removeprefix(prefix)) and \
                (blobs.modified(key) or 0) <= cutoff:
            report.orphan_blobs.append(key)
    for fh, alias, size, created, chunked in rows:
        if alias is not None:
            if created <= cutoff:
                report.expired_aliases.append(fh)
            continue
        if not chunked and pick() < sample:
            report.checked += 1
            digest = _sha256(blobs, nar_blob_key(fh), size)
            if digest is None or b32encode(digest.digest()) != fh:
                report.missing_content.append(fh)
                continue
        # An alias only points onward until its narinfo arrives; its target waits for it.
        if fh not in referenced and created <= cutoff and fh not in alias_targets:
            report.unreferenced_nars.append(fh)
    for h, (size, stored_size) in chunk_rows.items():
        if pick() < sample:
            report.checked += 1
            digest = _sha256(blobs, chunk_key(h), size, decompress=True)
            if digest is None or digest.hexdigest() != h or \
                    blobs.size(chunk_key(h)) != stored_size:
                report.broken_chunks.append(h)
    for h, size in cas_rows.items():
        if pick() < sample:
            report.checked += 1
            digest = _sha256(blobs, cas_key(h), size)
            if digest is None or digest.hexdigest() != h:
                report.missing_cas.append(h)
    if usage != stored:
        report.bazel_usage = (usage, stored)
    if repair:
        _repair(db, blobs, bound, report)
    return report


def _repair(db: Database, blobs: BlobStore, bound: SizeBound, report: FsckReport) -> None:
    for upload in report.stale_uploads:
        blobs.remove_stale_upload(upload)
    for h in report.missing_cas:
        with db.write() as conn:
            lock(conn, cas_lock(h))
            size = conn.execute(select(cas_blobs.c.size).where(cas_blobs.c.hash == h)).scalar()
            if size is not None:
                conn.execute(delete(cas_blobs).where(cas_blobs.c.hash == h))
                blobs.delete(cas_key(h))
                bound.add(conn, -int(size))
    for key in report.orphan_blobs:
        prefix, _, name = key.partition("/")
        with db.write() as conn:
            # Under the key's lock: removed only if no row names it by now.
            lock(conn, f"blob:{key}")
            row = {"cas": exists().where(cas_blobs.c.hash == name),
                   "nar": exists().where(nars.c.file_hash == name, nars.c.alias_of.is_(None)),
                   "chunk": exists().where(chunks.c.hash == name)}[prefix]
            if not conn.execute(select(row)).scalar():
                blobs.delete(key)
    for h in report.broken_chunks:
        with db.write() as conn:
            lock(conn, chunk_lock(h))
            users = list(conn.execute(select(nar_chunks.c.file_hash)
                                      .where(nar_chunks.c.chunk_hash == h).distinct()).scalars())
            for fh in users:
                _drop_nar(conn, fh)
            conn.execute(delete(chunks).where(chunks.c.hash == h))
            blobs.delete(chunk_key(h))
    for fh in report.missing_content:
        with db.write() as conn:
            nar_hash = conn.execute(select(nars.c.nar_hash)
                                    .where(nars.c.file_hash == fh)).scalar()
            if nar_hash is not None:
                lock(conn, *nar_locks(nar_hash, fh))
                _drop_nar(conn, fh)
            blobs.delete(nar_blob_key(fh))
    with db.write() as conn:
        for fh in report.expired_aliases:
            conn.execute(delete(nars).where(nars.c.file_hash == fh))
    for fh in report.unreferenced_nars:
        with db.write() as conn:
            nar_hash = conn.execute(select(nars.c.nar_hash)
                                    .where(nars.c.file_hash == fh)).scalar()
            if nar_hash is None:
                continue
            lock(conn, *nar_locks(nar_hash, fh))
            still_unused = ~exists().where(objects.c.nar_file == fh)
            if conn.execute(delete(nars).where(nars.c.file_hash == fh, still_unused)).rowcount:
                blobs.delete(nar_blob_key(fh))
    with db.write() as conn:
        bound.reset(conn)


def _drop_nar(conn: Connection, file_hash: str) -> None:
    """The NAR's paths, aliases and row go (its chunk list with it)."""
    conn.execute(delete(objects).where(objects.c.nar_file == file_hash))
    conn.execute(delete(nars).where(nars.c.alias_of == file_hash))
    conn.execute(delete(nars).where(nars.c.file_hash == file_hash))

"""NAR files: bytes stored once for every cache, verified while they stream, repaired by a
later upload when storage lost them.

A NAR may arrive in several compressions; its first stored file is canonical and later
files of the same NAR are recorded as aliases of it, keeping no bytes. Which caches may
see a file is not decided here (see ``paths``)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from sqlalchemy import Connection, delete, insert, select, update

from flywheel.cache.nix.chunks import Chunker, ChunkRef, ChunkStore
from flywheel.cache.nix.narinfos import signed_narinfo
from flywheel.cache.nix.verify import COMPRESSION_EXTENSIONS, NarFileVerifier, NarLimits
from flywheel.db.engine import Database, insert_ignore, lock
from flywheel.db.schema import cache_nars, caches, nar_chunks, nars, objects
from flywheel.errors import Invalid, Unavailable
from flywheel.nix import narinfo as narinfo_codec
from flywheel.nix.base32 import encode as b32encode
from flywheel.nix.hashes import NixHash
from flywheel.nix.signing import SecretKey
from flywheel.storage.base import BlobStore, BlobWriter
from flywheel.storage.serving import Redirect, Stream, stream_of

log = logging.getLogger(__name__)

_EXT_TO_COMPRESSION = {ext: name for name, ext in COMPRESSION_EXTENSIONS.items()}
NAR_FILE_NAME = re.compile(r"([0-9abcdfghijklmnpqrsvwxyz]{52})\.nar(\.xz|\.zst|\.bz2)?")
_PLACE_ATTEMPTS = 3
_NAR_COLUMNS = (nars.c.file_hash, nars.c.compression, nars.c.file_size, nars.c.nar_hash,
                nars.c.nar_size, nars.c.chunked)


def nar_blob_key(file_hash: str) -> str:
    return f"nar/{file_hash}"


def nar_locks(nar_hash: str, *file_hashes: str) -> tuple[str, ...]:
    """What a transaction holds while it records or deletes a NAR's bytes: the NAR (one
    stored copy per NAR) and each file's key (orphaned files are deleted by key)."""
    return (f"nar:{nar_hash}", *(f"blob:{nar_blob_key(fh)}" for fh in file_hashes))


def nar_url(file_hash: str, compression: str) -> str:
    return f"nar/{file_hash}.nar{COMPRESSION_EXTENSIONS[compression]}"


def parse_nar_file_name(file_name: str) -> tuple[str, str]:
    """``<file hash>.nar[.ext]`` → (file hash, compression)."""
    m = NAR_FILE_NAME.fullmatch(file_name)
    if not m:
        raise Invalid(f"bad NAR file name {file_name[:80]!r}: expected "
                      "nar/<nix-base32 sha256 of the file>.nar[.xz|.zst|.bz2]")
    return m.group(1), _EXT_TO_COMPRESSION[m.group(2) or ""]


@dataclass(frozen=True)
class NarFile:
    file_hash: str
    compression: str
    file_size: int
    nar_hash: str
    nar_size: int
    # Stored as chunks (always the uncompressed NAR, named by its NAR hash).
    chunked: bool = False

    @property
    def url(self) -> str:
        return nar_url(self.file_hash, self.compression)


@dataclass(frozen=True)
class Chunking:
    """NARs of at least ``from_size`` bytes are stored as chunks of about ``avg_size``."""

    store: ChunkStore
    from_size: int
    avg_size: int


class NarStore:
    def __init__(self, db: Database, blobs: BlobStore, limits: NarLimits,
                 redirect_ttl: int = 0, chunking: Chunking | None = None) -> None:
        self._db = db
        self._blobs = blobs
        self.limits = limits
        self.chunking = chunking
        self._reader: ChunkStore | None = None
        # Seconds a presigned URL is valid when downloads are redirected to the bucket.
        self._redirect_ttl = redirect_ttl

    def verify(self, compression: str, chunks: Iterable[bytes],
               sink: Callable[[bytes], object] | None = None) -> NarFile:
        """Verify a NAR file as it streams, handing each piece to ``sink``."""
        verifier = NarFileVerifier(compression, self.limits)
        for chunk in chunks:
            verifier.feed(chunk)
            if sink is not None:
                sink(chunk)
        verifier.finish()
        return NarFile(b32encode(verifier.file_sha256), compression, verifier.file_size,
                       "sha256:" + b32encode(verifier.nar_sha256), verifier.nar_size)

    def writer(self) -> BlobWriter:
        return self._blobs.writer()

    def ingest(self, file_name: str, chunks: Iterable[bytes], holder: int | None = None,
               check: Callable[[NarFile], None] | None = None) -> NarFile:
        """Store a NAR file named by the hash of its bytes, held from now on by the cache
        ``holder``. Returns the canonical file now holding the NAR (this one, or an earlier
        upload of it in any compression)."""
        expected, compression = parse_nar_file_name(file_name)
        if self.chunking is not None:
            return self.ingest_chunkable(compression, chunks, holder, expected, check)
        writer = self._blobs.writer()
        try:
            nar = self.verify(compression, chunks, writer.write)
            if nar.file_hash != expected:
                raise Invalid(f"NAR file hash is {nar.file_hash}, but its name says "
                              f"{expected}: the upload is corrupt or truncated")
            if check is not None:
                check(nar)
            writer.finish()
            return self.record(nar, writer, holder)
        finally:
            writer.close()

    def record(self, nar: NarFile, writer: BlobWriter, holder: int | None = None) -> NarFile:
        """Record a verified file whose bytes ``writer`` holds, held by the cache ``holder``
        from the same transaction on (so garbage collection cannot take what the upload
        just deduplicated against). Its bytes are placed unless an intact copy of the NAR
        is already stored; a damaged copy (lost or short in storage) is replaced by these
        bytes, and paths that named it are re-pointed. Returns the canonical file."""
        for _ in range(_PLACE_ATTEMPTS):
            with self._db.read() as conn:
                canonical = _canonical(conn, nar.nar_hash)
            if canonical is None or not self._intact(canonical):
                writer.place(nar_blob_key(nar.file_hash))
            kept = self._commit(nar, holder)
            if kept is not None:
                return kept
        raise Unavailable("the upload could not be stored because storage changed under "
                          "it; try again")

    def _commit(self, nar: NarFile, holder: int | None) -> NarFile | None:
        """Record ``nar`` (or the intact copy it duplicates); None when the bytes this needs
        were deleted meanwhile, so the caller places them again."""
        with self._db.write() as conn:
            # Deletions take the same locks with the row gone, so bytes seen here stay for
            # the rows written below.
            lock(conn, *nar_locks(nar.nar_hash, nar.file_hash))
            canonical = _canonical(conn, nar.nar_hash)
            if canonical is not None and canonical.file_hash != nar.file_hash and \
                    self._intact(canonical):
                _insert_alias(conn, nar, canonical.file_hash)
                # Another compression of this NAR won the race: the bytes this upload may
                # have placed are not kept (no row names them as stored, and the lock keeps
                # anyone from recording them meanwhile).
                self._blobs.delete(nar_blob_key(nar.file_hash))
                kept = canonical
            elif self._blobs.size(nar_blob_key(nar.file_hash)) != nar.file_size:
                return None
            else:
                if canonical is None:
                    _insert_canonical(conn, nar)
                elif canonical.file_hash == nar.file_hash:
                    conn.execute(update(nars).where(nars.c.file_hash == nar.file_hash)
                                 .values(broken_at=None))
                else:
                    self._replace_canonical(conn, canonical, nar)
                kept = nar
            if holder is not None:
                hold(conn, holder, kept.file_hash)
            return kept

    def ingest_chunkable(self, compression: str, pieces: Iterable[bytes], holder: int | None,
                         expected: str | None = None,
                         check: Callable[[NarFile], None] | None = None) -> NarFile:
        """Store a NAR file, as chunks once its NAR reaches the chunking size (the file's
        own bytes are then not kept), or else as the file itself. ``expected`` is the hash
        the file's name claims; ``check`` refuses what was sent before anything is
        recorded."""
        assert self.chunking is not None
        split = _Split(self.chunking)
        verifier = NarFileVerifier(compression, self.limits, split.feed)
        kept: list[bytes] | None = []
        try:
            for piece in pieces:
                verifier.feed(piece)
                if split.chunked:
                    kept = None  # chunked: the file itself is not stored
                elif kept is not None:
                    kept.append(piece)
            verifier.finish()
            nar = NarFile(b32encode(verifier.file_sha256), compression, verifier.file_size,
                          "sha256:" + b32encode(verifier.nar_sha256), verifier.nar_size)
            if expected is not None and nar.file_hash != expected:
                raise Invalid(f"NAR file hash is {nar.file_hash}, but its name says "
                              f"{expected}: the upload is corrupt or truncated")
            if check is not None:
                check(nar)
            if not split.chunked:
                assert kept is not None
                return self._record_file(nar, kept, holder)
            return self._record_chunked(nar, split.finish(), holder)
        except BaseException:
            split.abandon()
            raise

    def _record_file(self, nar: NarFile, data: list[bytes], holder: int | None) -> NarFile:
        writer = self._blobs.writer()
        try:
            for piece in data:
                writer.write(piece)
            writer.finish()
            return self.record(nar, writer, holder)
        finally:
            writer.close()

    def _record_chunked(self, nar: NarFile, refs: list[ChunkRef],
                        holder: int | None) -> NarFile:
        whole = NarFile(nar.nar_hash.removeprefix("sha256:"), "none", nar.nar_size,
                        nar.nar_hash, nar.nar_size, chunked=True)
        with self._db.write() as conn:
            lock(conn, *nar_locks(nar.nar_hash, whole.file_hash, nar.file_hash))
            canonical = _canonical(conn, nar.nar_hash)
            if canonical is not None and self._intact(canonical):
                kept = canonical
            else:
                if canonical is None:
                    _insert_canonical(conn, whole)
                elif canonical.file_hash == whole.file_hash:
                    conn.execute(update(nars).where(nars.c.file_hash == whole.file_hash)
                                 .values(broken_at=None, chunked=True))
                else:
                    self._replace_canonical(conn, canonical, whole)
                ChunkStore.link(conn, whole.file_hash, refs)
                kept = whole
            if nar.file_hash != kept.file_hash:
                _insert_alias(conn, nar, kept.file_hash)
            if holder is not None:
                hold(conn, holder, kept.file_hash)
            return kept

    def hold(self, holder: int, nar: NarFile) -> bool:
        """Mark the NAR as just uploaded to the cache ``holder`` (its narinfo may follow);
        False if it is no longer stored."""
        with self._db.write() as conn:
            lock(conn, *nar_locks(nar.nar_hash))
            if _canonical(conn, nar.nar_hash) != nar:
                return False
            hold(conn, holder, nar.file_hash)
            return True

    def _intact(self, nar: NarFile) -> bool:
        # A chunked NAR's chunks are checked when it is served (and marked broken then).
        if nar.chunked:
            return True
        return self._blobs.size(nar_blob_key(nar.file_hash)) == nar.file_size

    def _replace_canonical(self, conn: Connection, old: NarFile, new: NarFile) -> None:
        """``new`` holds the same NAR as the damaged ``old``: it becomes the stored copy, and
        every narinfo that named ``old`` names ``new`` instead, signed afresh."""
        log.warning("NAR %s was damaged in storage; replaced by the upload of %s",
                    old.file_hash, new.file_hash)
        # One canonical row per NAR at every step: ``new`` joins as an alias of ``old``,
        # then the two swap.
        _insert_alias(conn, new, old.file_hash)
        rows = conn.execute(
            select(objects.c.id, objects.c.narinfo, caches.c.signing_key, caches.c.store_dir)
            .join(caches, caches.c.id == objects.c.cache_id)
            .where(objects.c.nar_file == old.file_hash)).all()
        for obj_id, text, key_text, store_dir in rows:
            key = SecretKey.parse(key_text)
            info = narinfo_codec.parse(text, store_dir, narinfo_codec.MAX_NARINFO_BYTES + 4096)
            served = replace(info, url=new.url, compression=new.compression,
                             file_hash=NixHash.parse("sha256:" + new.file_hash),
                             file_size=new.file_size)
            conn.execute(update(objects).where(objects.c.id == obj_id).values(
                nar_file=new.file_hash, signed_by=key.name,
                narinfo=signed_narinfo(served, key, store_dir)))
        conn.execute(update(nars).where(nars.c.alias_of == old.file_hash,
                                        nars.c.file_hash != new.file_hash)
                     .values(alias_of=new.file_hash))
        conn.execute(update(nars).where(nars.c.file_hash == old.file_hash)
                     .values(alias_of=new.file_hash, broken_at=None))
        conn.execute(update(nars).where(nars.c.file_hash == new.file_hash)
                     .values(alias_of=None))
        if old.chunked:
            conn.execute(delete(nar_chunks).where(nar_chunks.c.file_hash == old.file_hash))
            conn.execute(update(nars).where(nars.c.file_hash == old.file_hash)
                         .values(chunked=False))
        else:
            self._blobs.delete(nar_blob_key(old.file_hash))

    def _chunked_content(self, nar: NarFile, head: bool) -> Stream | None:
        store = self._chunk_store()
        refs = store.refs(nar.file_hash)
        if sum(r.size for r in refs) != nar.file_size or not store.all_present(refs):
            return None
        if head:
            return stream_of(iter(()), nar.file_size, lambda: None)
        pieces = store.read(refs)
        return stream_of(pieces, nar.file_size, pieces.close)

    def _chunk_store(self) -> ChunkStore:
        # Chunked NARs stay readable after chunking is turned off.
        if self.chunking is not None:
            return self.chunking.store
        if self._reader is None:
            self._reader = ChunkStore(self._db, self._blobs)
        return self._reader

    def find(self, file_hash: str) -> tuple[NarFile, str | None] | None:
        """A recorded file and what it is an alias of (None for a canonical file)."""
        with self._db.read() as conn:
            row = conn.execute(select(*_NAR_COLUMNS, nars.c.alias_of)
                               .where(nars.c.file_hash == file_hash)).first()
        return None if row is None else (NarFile(*row[:6]), row[6])

    def canonical_for(self, nar_hash: str) -> NarFile | None:
        with self._db.read() as conn:
            return _canonical(conn, nar_hash)

    def mark_broken(self, nar: NarFile) -> None:
        log.error("NAR %s is missing or short in storage; marked broken until it is "
                  "uploaded again", nar.file_hash)
        with self._db.write() as conn:
            conn.execute(update(nars).where(nars.c.file_hash == nar.file_hash,
                                            nars.c.broken_at.is_(None))
                         .values(broken_at=int(time.time())))

    def local_path(self, nar: NarFile) -> str | None:
        return None if nar.chunked else self._blobs.local_path(nar_blob_key(nar.file_hash))

    def content(self, nar: NarFile, head: bool) -> Redirect | Stream | None:
        """The NAR's bytes where there is no local file to send; None when storage does not
        hold them intact (checked before anything is sent)."""
        if nar.chunked:
            return self._chunked_content(nar, head)
        key = nar_blob_key(nar.file_hash)
        if self._blobs.size(key) != nar.file_size:
            return None
        if self._redirect_ttl:
            return Redirect(self._blobs.url(key, self._redirect_ttl) or "")
        if head:
            return stream_of(iter(()), nar.file_size, lambda: None)
        try:
            source = self._blobs.open(key)
        except FileNotFoundError:
            return None
        return stream_of(iter(lambda: source.read(1 << 20), b""), nar.file_size, source.close)

    def stored_size(self, nar: NarFile) -> int | None:
        return self._blobs.size(nar_blob_key(nar.file_hash))


class _Split:
    """Receives a NAR as it is verified: holds its start until it reaches the chunking size,
    then cuts it into chunks and stores them as they are cut."""

    def __init__(self, chunking: Chunking) -> None:
        self._chunking = chunking
        self._start: list[bytes] = []
        self._seen = 0
        self._chunker: Chunker | None = None
        self._refs: list[ChunkRef] = []
        self._created: list[str] = []

    @property
    def chunked(self) -> bool:
        return self._chunker is not None

    def feed(self, data: bytes) -> None:
        if self._chunker is None:
            self._start.append(data)
            self._seen += len(data)
            if self._seen < self._chunking.from_size:
                return
            self._chunker = Chunker(self._chunking.avg_size)
            data, self._start = b"".join(self._start), []
        self._store(self._chunker.feed(data))

    def _store(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            ref, created = self._chunking.store.ensure(piece)
            self._refs.append(ref)
            if created:
                self._created.append(ref.hash)

    def finish(self) -> list[ChunkRef]:
        assert self._chunker is not None
        self._store(self._chunker.finish())
        return self._refs

    def abandon(self) -> None:
        """The upload failed: the chunks it stored first go again, unless something else
        uses them by now."""
        self._chunking.store.discard(self._created)


def hold(conn: Connection, cache_id: int, file_hash: str) -> None:
    """The cache holds the file from now on; the time says when it last uploaded it."""
    now = int(time.time())
    if not conn.execute(update(cache_nars).where(cache_nars.c.cache_id == cache_id,
                                                 cache_nars.c.file_hash == file_hash)
                        .values(created_at=now)).rowcount:
        conn.execute(insert_ignore(conn, cache_nars).values(
            cache_id=cache_id, file_hash=file_hash, created_at=now))


def _canonical(conn: Connection, nar_hash: str) -> NarFile | None:
    row = conn.execute(select(*_NAR_COLUMNS).where(
        nars.c.nar_hash == nar_hash, nars.c.alias_of.is_(None)).limit(1)).first()
    return NarFile(*row) if row is not None else None


def _insert_canonical(conn: Connection, nar: NarFile) -> None:
    # The file may have a row already: as an alias of a canonical file since removed.
    if not conn.execute(update(nars).where(nars.c.file_hash == nar.file_hash)
                        .values(alias_of=None, broken_at=None, chunked=nar.chunked)).rowcount:
        _insert(conn, nar, alias_of=None)


def _insert_alias(conn: Connection, nar: NarFile, canonical: str) -> None:
    exists = conn.execute(select(nars.c.file_hash)
                          .where(nars.c.file_hash == nar.file_hash)).first()
    if exists is None:
        _insert(conn, nar, alias_of=canonical)


def _insert(conn: Connection, nar: NarFile, alias_of: str | None) -> None:
    conn.execute(insert(nars).values(
        file_hash=nar.file_hash, compression=nar.compression, file_size=nar.file_size,
        nar_hash=nar.nar_hash, nar_size=nar.nar_size, alias_of=alias_of,
        chunked=nar.chunked, created_at=int(time.time())))

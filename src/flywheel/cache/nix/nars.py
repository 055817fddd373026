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

from sqlalchemy import Connection, insert, select, update

from flywheel.cache.nix.narinfos import signed_narinfo
from flywheel.cache.nix.verify import COMPRESSION_EXTENSIONS, NarFileVerifier, NarLimits
from flywheel.db.engine import Database, insert_ignore, lock
from flywheel.db.schema import cache_nars, caches, nars, objects
from flywheel.errors import Invalid, Unavailable
from flywheel.nix import narinfo as narinfo_codec
from flywheel.nix.base32 import encode as b32encode
from flywheel.nix.hashes import NixHash
from flywheel.nix.signing import SecretKey
from flywheel.storage.base import BlobStore, BlobWriter

log = logging.getLogger(__name__)

_EXT_TO_COMPRESSION = {ext: name for name, ext in COMPRESSION_EXTENSIONS.items()}
NAR_FILE_NAME = re.compile(r"([0-9abcdfghijklmnpqrsvwxyz]{52})\.nar(\.xz|\.zst|\.bz2)?")
_PLACE_ATTEMPTS = 3
_NAR_COLUMNS = (nars.c.file_hash, nars.c.compression, nars.c.file_size, nars.c.nar_hash,
                nars.c.nar_size)


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

    @property
    def url(self) -> str:
        return nar_url(self.file_hash, self.compression)


class NarStore:
    def __init__(self, db: Database, blobs: BlobStore, limits: NarLimits) -> None:
        self._db = db
        self._blobs = blobs
        self.limits = limits

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

    def ingest(self, file_name: str, chunks: Iterable[bytes],
               holder: int | None = None) -> NarFile:
        """Store a NAR file named by the hash of its bytes, held from now on by the cache
        ``holder``. Returns the canonical file now holding the NAR (this one, or an earlier
        upload of it in any compression)."""
        expected, compression = parse_nar_file_name(file_name)
        writer = self._blobs.writer()
        try:
            nar = self.verify(compression, chunks, writer.write)
            if nar.file_hash != expected:
                raise Invalid(f"NAR file hash is {nar.file_hash}, but its name says "
                              f"{expected}: the upload is corrupt or truncated")
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
        self._blobs.delete(nar_blob_key(old.file_hash))

    def find(self, file_hash: str) -> tuple[NarFile, str | None] | None:
        """A recorded file and what it is an alias of (None for a canonical file)."""
        with self._db.read() as conn:
            row = conn.execute(select(*_NAR_COLUMNS, nars.c.alias_of)
                               .where(nars.c.file_hash == file_hash)).first()
        return None if row is None else (NarFile(*row[:5]), row[5])

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
        return self._blobs.local_path(nar_blob_key(nar.file_hash))

    def stored_size(self, nar: NarFile) -> int | None:
        return self._blobs.size(nar_blob_key(nar.file_hash))


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
                        .values(alias_of=None, broken_at=None)).rowcount:
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
        created_at=int(time.time())))

"""Store paths in caches: what a cache holds, how it is served, and how it is added to.

NAR bytes are shared by all caches (``nars``), but a cache holds a NAR only through an
upload to it or a narinfo of its own naming it. Adding a path whose NAR lives elsewhere
needs proof of possession: the bytes were sent in this request, or the caller may read a
cache that holds them. No answer or error tells a caller anything about content it
cannot read."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, and_, bindparam, delete, exists, func, or_, select
from sqlalchemy.exc import IntegrityError

from flywheel.cache.nix.narinfos import signed_narinfo
from flywheel.cache.nix.nars import NarFile, NarStore, parse_nar_file_name
from flywheel.cache.tenancy import STORED_NARINFO_MAX_BYTES, Cache, CacheService
from flywheel.codecs import ZstdStreamCompressor
from flywheel.db.engine import Database, insert_ignore
from flywheel.db.schema import cache_nars, caches, nars, objects
from flywheel.db.touch import AccessTimes
from flywheel.errors import FailedPrecondition, Invalid
from flywheel.nix import narinfo as narinfo_codec
from flywheel.nix.base32 import encode as b32encode
from flywheel.nix.hashes import NixHash
from flywheel.nix.narinfo import NarInfo, NarInfoError

# May the caller pull from the cache of this name (and visibility)?
Readable = Callable[[str, bool], bool]
_RESIGN_BATCH = 500

_NARINFO_BY_NAME = (
    select(caches.c.is_public, objects.c.narinfo, objects.c.signed_by, caches.c.key_name,
           objects.c.id, objects.c.accessed_at)
    .select_from(caches.outerjoin(
        objects.join(nars, and_(nars.c.file_hash == objects.c.nar_file,
                                nars.c.broken_at.is_(None))),
        and_(objects.c.cache_id == caches.c.id,
             objects.c.store_path_hash == bindparam("h"))))
    .where(caches.c.name == bindparam("cache"))
)

# A NAR is served through a cache once a narinfo of the cache names it (an upload alone
# makes it the cache's to name, not to serve).
_NAR_BY_NAME = (
    select(caches.c.is_public, nars.c.file_hash, nars.c.compression, nars.c.file_size,
           nars.c.nar_hash, nars.c.nar_size, nars.c.broken_at, nars.c.chunked)
    .select_from(caches.outerjoin(nars, and_(
        nars.c.file_hash == bindparam("f"), nars.c.alias_of.is_(None),
        exists().where(objects.c.cache_id == caches.c.id,
                       objects.c.nar_file == nars.c.file_hash))))
    .where(caches.c.name == bindparam("cache"))
)


@dataclass(frozen=True)
class NarinfoLookup:
    cache_public: bool
    text: str | None


@dataclass(frozen=True)
class NarLookup:
    cache_public: bool
    nar: NarFile | None
    broken: bool


@dataclass(frozen=True)
class UploadOutcome:
    """What Attic's upload reports. ``deduplicated`` only when the caller could read the
    copy that was already there: otherwise the answer would tell it that another tenant
    holds these bytes."""

    deduplicated: bool
    file_size: int


class PathService:
    def __init__(self, db: Database, nar_store: NarStore, caches_: CacheService) -> None:
        self._db = db
        self.nars = nar_store
        self._caches = caches_
        self._narinfo_query = db.hot.prepare(_NARINFO_BY_NAME)
        self._nar_query = db.hot.prepare(_NAR_BY_NAME)
        # Retention counts from the last time a client asked for a path's narinfo.
        self.access_times = AccessTimes(db, objects.c.id, objects.c.accessed_at)

    # -- reads on the request path: one indexed query each, also telling whether the cache
    # -- exists and is public, for the permission check --

    def narinfo(self, cache_name: str, hash_part: str) -> NarinfoLookup | None:
        row = self._db.hot.run(self._narinfo_query, {"cache": cache_name, "h": hash_part})
        if row is None:
            return None
        public, text, signed_by, key_name, object_id, accessed_at = row
        if text is not None:
            self.access_times.seen(object_id, accessed_at)
            if signed_by != key_name:
                text = self._resigned(cache_name, text, signed_by)
        return NarinfoLookup(bool(public), text)

    def _resigned(self, cache_name: str, text: str, old_key_name: str) -> str:
        """A narinfo signed before the cache's key was rotated, signed now with the current
        key (the background re-signing has not reached it yet)."""
        cache = self._caches.get(cache_name)
        info = narinfo_codec.parse(text, cache.store_dir, STORED_NARINFO_MAX_BYTES)
        return signed_narinfo(info, cache.signing_key, cache.store_dir, old_key_name)

    def nar(self, cache_name: str, file_hash: str) -> NarLookup | None:
        row = self._db.hot.run(self._nar_query, {"cache": cache_name, "f": file_hash})
        if row is None:
            return None
        nar = NarFile(row[1], row[2], row[3], row[4], row[5], bool(row[7])) \
            if row[1] is not None else None
        return NarLookup(bool(row[0]), nar, row[6] is not None)

    def missing(self, cache: Cache, hash_parts: list[str]) -> list[str]:
        present: set[str] = set()
        with self._db.read() as conn:
            for i in range(0, len(hash_parts), 500):
                present.update(conn.execute(select(objects.c.store_path_hash).where(
                    objects.c.cache_id == cache.id,
                    objects.c.store_path_hash.in_(hash_parts[i:i + 500]))).scalars())
        return [h for h in hash_parts if h not in present]

    # -- writes --

    def put_nar(self, cache: Cache, file_name: str, chunks: Iterable[bytes]) -> NarFile:
        """Store an uploaded NAR file (verified while it streams); the cache holds it from
        now on, so its narinfo may follow."""
        return self.nars.ingest(file_name, chunks, cache.id)

    def put_narinfo(self, cache: Cache, hash_part: str, text: bytes,
                    readable: Readable) -> bool:
        """Accept a narinfo whose NAR the cache holds (or the caller may read elsewhere).
        Returns False when the cache already held the path (the first upload stays)."""
        try:
            info = narinfo_codec.parse(text, cache.store_dir)
        except NarInfoError as e:
            raise Invalid(f"malformed narinfo: {e}") from None
        if info.store_path.hash_part != hash_part:
            raise Invalid(f"narinfo is for {info.store_path.base_name}, "
                          f"but was uploaded as {hash_part}.narinfo")
        if not info.url.startswith("nar/"):
            raise Invalid(f"narinfo URL {info.url[:80]!r} is not a NAR of this cache "
                          "(expected nar/<file hash>.nar[.ext])")
        file_hash, compression = parse_nar_file_name(info.url.removeprefix("nar/"))
        possessed = self._possessed(cache, file_hash, readable)
        if possessed is None:
            raise FailedPrecondition(f"{info.url} has not been uploaded to cache "
                                     f"{cache.name!r}: upload the NAR first")
        named, canonical = possessed
        _check_claims(info, canonical)
        if compression != named.compression or info.compression != compression:
            raise Invalid(f"narinfo says Compression: {info.compression}, but {info.url} "
                          f"is {compression}")
        if info.file_hash is not None and \
                info.file_hash.to_base32() != f"sha256:{named.file_hash}":
            raise Invalid("FileHash does not match the uploaded file")
        if info.file_size is not None and info.file_size != named.file_size:
            raise Invalid("FileSize does not match the uploaded file")
        return self.add_object(cache, info, canonical)

    def _possessed(self, cache: Cache, file_hash: str,
                   readable: Readable) -> tuple[NarFile, NarFile] | None:
        """(the file named, the canonical file holding its NAR) if the cache holds it or
        the caller may read a cache that does; None otherwise, whether or not it exists."""
        found = self.nars.find(file_hash)
        if found is None:
            return None
        named, alias_of = found
        nar = named
        if alias_of is not None:
            resolved = self.nars.find(alias_of)
            if resolved is None:
                return None
            nar = resolved[0]
        held = or_(exists().where(objects.c.cache_id == caches.c.id,
                                  objects.c.nar_file == nar.file_hash),
                   exists().where(cache_nars.c.cache_id == caches.c.id,
                                  cache_nars.c.file_hash == nar.file_hash))
        with self._db.read() as conn:
            holders = conn.execute(select(caches.c.id, caches.c.name, caches.c.is_public)
                                   .where(held)).all()
        if any(cid == cache.id or readable(name, bool(public))
               for cid, name, public in holders):
            return named, nar
        return None

    def upload_path(self, cache: Cache, info: NarInfo, chunks: Iterable[bytes],
                    readable: Readable) -> UploadOutcome:
        """Attic's upload: an uncompressed NAR plus its metadata, verified against each
        other while it streams and stored zstd-compressed."""
        known = self.nars.canonical_for(info.nar_hash.to_base32())
        if known is not None and self._possessed(cache, known.file_hash, readable) and \
                self.nars.hold(cache.id, known):
            # The caller may read a copy already (held for this cache from now on, so
            # garbage collection leaves it): verify the bytes, keep none of them.
            _check_sent(info, self.nars.verify("none", chunks))
            self.add_object(cache, info, known)
            return UploadOutcome(True, known.file_size)
        if self.nars.chunking is not None:
            kept = self.nars.ingest_chunkable("none", chunks, cache.id,
                                              check=lambda got: _check_sent(info, got))
            self.add_object(cache, info, kept)
            return UploadOutcome(False, kept.file_size)
        writer = self.nars.writer()
        try:
            compressed = _ZstdFile(writer.write)
            got = self.nars.verify("none", chunks, compressed.write)
            _check_sent(info, got)
            compressed.close()
            writer.finish()
            nar = NarFile(b32encode(compressed.sha256.digest()), "zstd", compressed.size,
                          got.nar_hash, got.nar_size)
            kept = self.nars.record(nar, writer, cache.id)
        finally:
            writer.close()
        self.add_object(cache, info, kept)
        return UploadOutcome(False, nar.file_size)

    def add_object(self, cache: Cache, info: NarInfo, canonical: NarFile) -> bool:
        """List a store path in a cache, pointing at a stored file, with the narinfo it
        will be served as (signed now, so a hit is one lookup). The first upload stays."""
        served = NarInfo(
            store_path=info.store_path, url=canonical.url, compression=canonical.compression,
            nar_hash=info.nar_hash, nar_size=info.nar_size, references=info.references,
            file_hash=NixHash.parse("sha256:" + canonical.file_hash),
            file_size=canonical.file_size, deriver=info.deriver, system=info.system,
            sigs=info.sigs, ca=info.ca)
        key = cache.signing_key
        text = signed_narinfo(served, key, cache.store_dir)
        try:
            with self._db.write() as conn:
                return self._insert_object(conn, cache, info, canonical, text, key.name)
        except IntegrityError:
            # Not a second upload of the path (that is ignored above) but its NAR's row gone
            # meanwhile (a concurrent fsck --repair): the path is not stored.
            raise FailedPrecondition("the NAR was removed while this path was added; upload "
                                     "it again") from None

    @staticmethod
    def _insert_object(conn: Connection, cache: Cache, info: NarInfo, canonical: NarFile,
                       text: str, key_name: str) -> bool:
        now = int(time.time())
        return bool(conn.execute(insert_ignore(conn, objects).values(
            cache_id=cache.id, store_path_hash=info.store_path.hash_part,
            store_path=info.store_path.path(cache.store_dir),
            nar_file=canonical.file_hash, nar_hash=canonical.nar_hash,
            nar_size=canonical.nar_size,
            refs=" ".join(r.base_name for r in info.references),
            deriver=info.deriver.base_name if info.deriver else None,
            system=info.system, sigs="\n".join(info.sigs), ca=info.ca,
            narinfo=text, signed_by=key_name, created_at=now, accessed_at=now)).rowcount)

    def resign_stale(self, cache: Cache) -> int:
        """Re-sign narinfos signed by an earlier key, in short transactions; returns how
        many. Serving does not wait for this: a stale narinfo is signed when served."""
        done = 0
        key = cache.signing_key
        while True:
            with self._db.write() as conn:
                rows = conn.execute(select(objects.c.id, objects.c.narinfo, objects.c.signed_by)
                                    .where(objects.c.cache_id == cache.id,
                                           objects.c.signed_by != key.name)
                                    .limit(_RESIGN_BATCH)).all()
                for obj_id, text, old in rows:
                    info = narinfo_codec.parse(text, cache.store_dir, STORED_NARINFO_MAX_BYTES)
                    conn.execute(objects.update().where(objects.c.id == obj_id).values(
                        narinfo=signed_narinfo(info, key, cache.store_dir, old),
                        signed_by=key.name))
            done += len(rows)
            if len(rows) < _RESIGN_BATCH:
                return done

    def list_objects(self, cache: Cache, *, order: str, after: str | None,
                     limit: int) -> tuple[list[dict[str, object]], str | None]:
        """One page of a cache's store paths, newest first or by name, and the cursor of
        the next page (opaque to clients; None at the end)."""
        name = func.substr(objects.c.store_path, len(cache.store_dir) + 2 + 33)
        q = select(objects.c.id, objects.c.store_path, objects.c.store_path_hash,
                   objects.c.nar_hash, objects.c.nar_size, objects.c.created_at,
                   name.label("name")).where(objects.c.cache_id == cache.id)
        if order == "newest":
            q = q.order_by(objects.c.id.desc())
            if after:
                q = q.where(objects.c.id < _cursor_id(after))
        elif order == "name":
            q = q.order_by(name, objects.c.id)
            if after:
                last_name, last_id = _name_cursor(after)
                q = q.where(or_(name > last_name, and_(name == last_name,
                                                       objects.c.id > last_id)))
        else:
            raise Invalid("order must be 'newest' or 'name'")
        with self._db.read() as conn:
            rows = conn.execute(q.limit(limit + 1)).all()
        page = [{"store_path": r.store_path, "store_path_hash": r.store_path_hash,
                 "nar_hash": r.nar_hash, "nar_size": r.nar_size, "created_at": r.created_at}
                for r in rows[:limit]]
        if len(rows) <= limit:
            return page, None
        last = rows[limit - 1]
        cursor = str(last.id) if order == "newest" else base64.urlsafe_b64encode(
            json.dumps([last.name, last.id]).encode()).decode()
        return page, cursor

    def delete(self, cache: Cache, hash_part: str) -> bool:
        with self._db.write() as conn:
            return bool(conn.execute(delete(objects).where(
                objects.c.cache_id == cache.id, objects.c.store_path_hash == hash_part)).rowcount)


# Row ids are 64-bit integers; a cursor that decodes to anything else is not one of ours.
_MAX_ID = (1 << 63) - 1


def _cursor_id(text: str) -> int:
    if not text.isdigit() or len(text) > 19 or int(text) > _MAX_ID:
        raise Invalid("invalid cursor")
    return int(text)


def _name_cursor(text: str) -> tuple[str, int]:
    try:
        value = json.loads(base64.urlsafe_b64decode(text.encode()))
    except (ValueError, binascii.Error):
        raise Invalid("invalid cursor") from None
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and type(value[1]) is int and 0 <= value[1] <= _MAX_ID):
        raise Invalid("invalid cursor")
    return value[0], value[1]


class _ZstdFile:
    """zstd-compresses what it is given into ``write``, hashing and counting the output."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self._compressor = ZstdStreamCompressor(level=3)
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._emit(self._compressor.compress(data))

    def close(self) -> None:
        self._emit(self._compressor.flush())

    def _emit(self, out: bytes) -> None:
        if out:
            self.sha256.update(out)
            self.size += len(out)
            self._write(out)


def _check_claims(info: NarInfo, nar: NarFile) -> None:
    """For a NAR that is stored already: nothing of it is quoted, since the caller may not
    be able to read it."""
    if info.nar_hash.to_base32() != nar.nar_hash:
        raise Invalid("the narinfo's NarHash does not match the NAR")
    if info.nar_size != nar.nar_size:
        raise Invalid("the narinfo's NarSize does not match the NAR")


def _check_sent(info: NarInfo, sent: NarFile) -> None:
    """For the bytes of this request, which the caller knows anyway."""
    if info.nar_hash.to_base32() != sent.nar_hash:
        raise Invalid(f"the uploaded NAR hashes to {sent.nar_hash}, not the claimed "
                      f"{info.nar_hash.to_base32()}")
    if info.nar_size != sent.nar_size:
        raise Invalid(f"the uploaded NAR is {sent.nar_size} bytes, not the claimed "
                      f"{info.nar_size}")


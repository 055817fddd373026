"""Store paths in caches: NAR ingest, narinfo acceptance, lookups for serving, deletion."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import Engine, and_, bindparam, delete, func, insert, or_, select
from sqlalchemy.exc import IntegrityError

from flywheel.cache.nix.narinfos import signed_narinfo
from flywheel.cache.nix.verify import COMPRESSION_EXTENSIONS, NarFileVerifier, UploadError
from flywheel.cache.tenancy import Cache
from flywheel.codecs import ZstdStreamCompressor
from flywheel.db.hot import HotReads
from flywheel.db.schema import caches, nars, objects
from flywheel.nix import narinfo as narinfo_codec
from flywheel.nix.base32 import encode as b32encode
from flywheel.nix.hashes import NixHash
from flywheel.nix.narinfo import NarInfo, NarInfoError
from flywheel.storage.base import BlobStore, BlobWriter

log = logging.getLogger(__name__)

_EXT_TO_COMPRESSION = {ext: name for name, ext in COMPRESSION_EXTENSIONS.items()}
NAR_FILE_NAME = re.compile(r"([0-9abcdfghijklmnpqrsvwxyz]{52})\.nar(\.xz|\.zst|\.bz2)?")


def nar_blob_key(file_hash: str) -> str:
    return f"nar/{file_hash}"


def nar_url(file_hash: str, compression: str) -> str:
    return f"nar/{file_hash}.nar{COMPRESSION_EXTENSIONS[compression]}"


@dataclass(frozen=True)
class NarFile:
    file_hash: str
    compression: str
    file_size: int
    nar_hash: str
    nar_size: int


@dataclass(frozen=True)
class Found:
    """A lookup result with the owning cache's visibility, for the permission check."""

    cache_public: bool
    value: str | NarFile | None


_NARINFO_BY_NAME = (
    select(caches.c.is_public, objects.c.narinfo)
    .select_from(caches.outerjoin(objects, and_(objects.c.cache_id == caches.c.id,
                                                objects.c.store_path_hash == bindparam("h"))))
    .where(caches.c.name == bindparam("cache"))
)

_NAR_BY_NAME = (
    select(caches.c.is_public, nars.c.file_hash, nars.c.compression, nars.c.file_size,
           nars.c.nar_hash, nars.c.nar_size)
    .select_from(caches.outerjoin(
        objects.join(nars, nars.c.file_hash == objects.c.nar_file),
        and_(objects.c.cache_id == caches.c.id, objects.c.nar_file == bindparam("f"))))
    .where(caches.c.name == bindparam("cache"))
    .limit(1)
)


class PathService:
    def __init__(self, engine: Engine, reads: HotReads, blobs: BlobStore,
                 max_nar_size: int) -> None:
        self._engine = engine
        self._blobs = blobs
        self._max_nar_size = max_nar_size
        self._reads = reads
        self._narinfo_query = reads.prepare(_NARINFO_BY_NAME)
        self._nar_query = reads.prepare(_NAR_BY_NAME)

    # -- reads: one indexed query each, also telling whether the cache exists and is public --

    def narinfo(self, cache_name: str, hash_part: str) -> Found | None:
        row = self._reads.run(self._narinfo_query, {"cache": cache_name, "h": hash_part})
        return None if row is None else Found(bool(row[0]), row[1])

    def nar(self, cache_name: str, file_hash: str) -> Found | None:
        row = self._reads.run(self._nar_query, {"cache": cache_name, "f": file_hash})
        if row is None:
            return None
        return Found(bool(row[0]), NarFile(*row[1:]) if row[1] is not None else None)

    def nar_local_path(self, nar: NarFile) -> str | None:
        return self._blobs.local_path(nar_blob_key(nar.file_hash))

    def open_nar(self, nar: NarFile) -> object:
        return self._blobs.open(nar_blob_key(nar.file_hash))

    # -- writes --

    async def put_nar(self, file_name: str, body: AsyncIterator[bytes]) -> NarFile:
        """Store a NAR file named by the hash of its bytes, verifying it while it streams.

        Nothing becomes visible unless the name, the compression and the archive inside
        all check out; a NAR already held in any compression keeps no second copy."""
        m = NAR_FILE_NAME.fullmatch(file_name)
        if not m:
            raise UploadError(f"bad NAR file name {file_name!r}: expected "
                              "nar/<nix-base32 sha256 of the file>.nar[.xz|.zst|.bz2]")
        expected_hash, compression = m.group(1), _EXT_TO_COMPRESSION[m.group(2) or ""]
        verifier = NarFileVerifier(compression, self._max_nar_size)
        writer = self._blobs.writer()
        try:
            async for chunk in body:
                verifier.feed(chunk)
                writer.write(chunk)
            verifier.finish()
            file_hash = b32encode(verifier.file_sha256)
            if file_hash != expected_hash:
                raise UploadError(f"NAR file hash is {file_hash}, but its name says "
                                  f"{expected_hash}: the upload is corrupt or truncated")
            nar = NarFile(file_hash, compression, verifier.file_size,
                          "sha256:" + b32encode(verifier.nar_sha256), verifier.nar_size)
            existing = self._find_nar_file(file_hash)
            if existing is not None:
                writer.abort()
                return existing
            self._keep(nar, writer)
            return nar
        except BaseException:
            writer.abort()
            raise

    def _keep(self, nar: NarFile, writer: BlobWriter) -> NarFile:
        """Record a verified file, or only an alias when the NAR is already held; returns
        the file whose bytes are kept."""
        canonical = self._canonical_for(nar.nar_hash)
        if canonical is not None:
            writer.abort()
            self._insert_nar(nar, alias_of=canonical)
            return self._resolve(nar)
        writer.commit(nar_blob_key(nar.file_hash))
        if not self._insert_nar(nar, alias_of=None):
            # A concurrent upload recorded this NAR first. Unless it was this very file,
            # its copy is the one kept and ours goes.
            recorded, alias = self._alias_state(nar.file_hash)
            if not recorded or alias is not None:
                self._blobs.delete(nar_blob_key(nar.file_hash))
            if not recorded:
                self._insert_nar(nar, alias_of=self._canonical_for(nar.nar_hash))
        return self._resolve(nar)

    async def upload_path(self, cache: Cache, info: NarInfo,
                          body: AsyncIterator[bytes]) -> tuple[bool, NarFile]:
        """Attic's upload: an uncompressed NAR plus its metadata. The NAR is verified
        against ``info`` while it streams and stored zstd-compressed. Returns whether its
        bytes were new, and the file kept."""
        verifier = NarFileVerifier("none", self._max_nar_size)
        already = self._canonical_for(info.nar_hash.to_base32())
        compressor = None if already is not None else ZstdStreamCompressor(level=3)
        writer = self._blobs.writer()
        file_sha = hashlib.sha256()
        file_size = 0
        try:
            async for chunk in body:
                verifier.feed(chunk)
                if compressor is not None:
                    out = compressor.compress(chunk)
                    file_sha.update(out)
                    file_size += len(out)
                    writer.write(out)
            verifier.finish()
            nar_hash = "sha256:" + b32encode(verifier.nar_sha256)
            _check_claims(info, nar_hash, verifier.nar_size)
            if compressor is None:
                writer.abort()
                canonical = self._find_nar_file(str(already))
                if canonical is not None:
                    self._add_object(cache, info, canonical)
                    return False, canonical
                raise UploadError("the stored copy of this NAR vanished; upload again")
            tail = compressor.flush()
            file_sha.update(tail)
            writer.write(tail)
            nar = NarFile(b32encode(file_sha.digest()), "zstd", file_size + len(tail),
                          nar_hash, verifier.nar_size)
            kept = self._keep(nar, writer)
            self._add_object(cache, info, kept)
            return kept.file_hash == nar.file_hash, kept
        except BaseException:
            writer.abort()
            raise

    def missing(self, cache: Cache, hash_parts: list[str]) -> list[str]:
        present: set[str] = set()
        with self._engine.connect() as conn:
            for i in range(0, len(hash_parts), 500):
                present.update(conn.execute(select(objects.c.store_path_hash).where(
                    objects.c.cache_id == cache.id,
                    objects.c.store_path_hash.in_(hash_parts[i:i + 500]))).scalars())
        return [h for h in hash_parts if h not in present]

    def _find_nar_file(self, file_hash: str) -> NarFile | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(nars.c.file_hash, nars.c.compression, nars.c.file_size,
                                      nars.c.nar_hash, nars.c.nar_size)
                               .where(nars.c.file_hash == file_hash)).first()
        return NarFile(*row) if row is not None else None

    def _alias_state(self, file_hash: str) -> tuple[bool, str | None]:
        """(whether the file has a row, what it is an alias of)."""
        with self._engine.connect() as conn:
            row = conn.execute(select(nars.c.alias_of)
                               .where(nars.c.file_hash == file_hash)).first()
        return (row is not None, row[0] if row is not None else None)

    def _canonical_for(self, nar_hash: str) -> str | None:
        with self._engine.connect() as conn:
            return conn.execute(select(nars.c.file_hash).where(
                nars.c.nar_hash == nar_hash, nars.c.alias_of.is_(None)).limit(1)).scalar()

    def _insert_nar(self, nar: NarFile, alias_of: str | None) -> bool:
        """False when a concurrent upload recorded the same file, or (for a canonical row)
        the same NAR, first."""
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(nars).values(
                    file_hash=nar.file_hash, compression=nar.compression,
                    file_size=nar.file_size, nar_hash=nar.nar_hash, nar_size=nar.nar_size,
                    alias_of=alias_of, created_at=int(time.time())))
        except IntegrityError:
            return False
        return True

    def put_narinfo(self, cache: Cache, hash_part: str, text: bytes) -> bool:
        """Accept a narinfo whose NAR is already stored and matches it. Returns False when
        the cache already held the path (the first upload stays)."""
        try:
            info = narinfo_codec.parse(text, cache.store_dir)
        except NarInfoError as e:
            raise UploadError(f"malformed narinfo: {e}") from None
        if info.store_path.hash_part != hash_part:
            raise UploadError(f"narinfo is for {info.store_path.base_name}, "
                              f"but was uploaded as {hash_part}.narinfo")
        nar = self._nar_for_narinfo(info)
        return self._add_object(cache, info, self._resolve(nar))

    def _add_object(self, cache: Cache, info: NarInfo, canonical: NarFile) -> bool:
        """List a store path in a cache, pointing at a stored file, with the narinfo it
        will be served as (signed now, so a hit is one lookup). The first upload stays."""
        hash_part = info.store_path.hash_part
        served = NarInfo(
            store_path=info.store_path, url=nar_url(canonical.file_hash, canonical.compression),
            compression=canonical.compression,
            nar_hash=info.nar_hash, nar_size=info.nar_size, references=info.references,
            file_hash=NixHash.parse("sha256:" + canonical.file_hash),
            file_size=canonical.file_size, deriver=info.deriver, system=info.system,
            sigs=info.sigs, ca=info.ca)
        text_out = signed_narinfo(served, cache.signing_key, cache.store_dir)
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(objects).values(
                    cache_id=cache.id, store_path_hash=hash_part,
                    store_path=info.store_path.path(cache.store_dir),
                    nar_file=canonical.file_hash, nar_hash=canonical.nar_hash,
                    nar_size=canonical.nar_size,
                    refs=" ".join(r.base_name for r in info.references),
                    deriver=info.deriver.base_name if info.deriver else None,
                    system=info.system, sigs="\n".join(info.sigs), ca=info.ca,
                    narinfo=text_out, created_at=int(time.time())))
        except IntegrityError:
            return False
        return True

    def _nar_for_narinfo(self, info: NarInfo) -> NarFile:
        m = NAR_FILE_NAME.fullmatch(info.url.removeprefix("nar/"))
        if not info.url.startswith("nar/") or not m:
            raise UploadError(f"narinfo URL {info.url!r} is not a NAR uploaded here "
                              "(expected nar/<file hash>.nar[.ext])")
        nar = self._find_nar_file(m.group(1))
        if nar is None:
            raise UploadError(f"{info.url} has not been uploaded; upload the NAR first")
        if info.compression != nar.compression:
            raise UploadError(f"narinfo says Compression: {info.compression}, but {info.url} "
                              f"is {nar.compression}")
        _check_claims(info, nar.nar_hash, nar.nar_size)
        if info.file_hash is not None and info.file_hash.to_base32() != f"sha256:{nar.file_hash}":
            raise UploadError("FileHash does not match the uploaded file")
        if info.file_size is not None and info.file_size != nar.file_size:
            raise UploadError("FileSize does not match the uploaded file")
        return nar

    def _resolve(self, nar: NarFile) -> NarFile:
        _, alias = self._alias_state(nar.file_hash)
        if alias is None:
            return nar
        canonical = self._find_nar_file(alias)
        return canonical if canonical is not None else nar

    def list_objects(self, cache: Cache, *, order: str, after: str | None,
                     limit: int) -> tuple[list[dict[str, object]], str | None]:
        """One page of a cache's store paths, newest first or by name, and the cursor of
        the next page (opaque to clients; None at the end)."""
        name = func.substr(objects.c.store_path, len(cache.store_dir) + 2 + 33)
        q = select(objects.c.id, objects.c.store_path, objects.c.store_path_hash,
                   objects.c.nar_hash, objects.c.nar_size, objects.c.created_at,
                   name.label("name")).where(objects.c.cache_id == cache.id)
        try:
            if order == "newest":
                q = q.order_by(objects.c.id.desc())
                if after:
                    q = q.where(objects.c.id < int(after))
            elif order == "name":
                q = q.order_by(name, objects.c.id)
                if after:
                    last_name, last_id = json.loads(base64.urlsafe_b64decode(after))
                    q = q.where(or_(name > last_name,
                                    and_(name == last_name, objects.c.id > int(last_id))))
            else:
                raise UploadError("order must be 'newest' or 'name'")
        except (ValueError, TypeError, binascii.Error):
            raise UploadError("invalid cursor") from None
        with self._engine.connect() as conn:
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
        with self._engine.begin() as conn:
            return bool(conn.execute(delete(objects).where(
                objects.c.cache_id == cache.id, objects.c.store_path_hash == hash_part)).rowcount)


def _check_claims(info: NarInfo, nar_hash: str, nar_size: int) -> None:
    if info.nar_hash.to_base32() != nar_hash:
        raise UploadError(f"the uploaded NAR hashes to {nar_hash}, not the claimed "
                          f"{info.nar_hash.to_base32()}")
    if info.nar_size != nar_size:
        raise UploadError(f"the uploaded NAR is {nar_size} bytes, not the claimed "
                          f"{info.nar_size}")

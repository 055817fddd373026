"""Per-cache action caches. Entries are not content-verified (an ActionResult is whatever a
client says an action produced), so they are never shared between caches.

An entry is accepted only when every blob it names, down to the files inside its output
directories, is held by the same cache; the list of those blobs is kept with the entry,
so a lookup checks storage still has them without reading a Tree again, and answers a
miss rather than a result Bazel cannot download."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, delete, func, select, update

from flywheel.bazel.action_result import (
    ActionResultError,
    parse_action_result,
    referenced_digests,
    tree_digests,
    tree_file_digests,
)
from flywheel.bazel.digests import Digest
from flywheel.cache.bazel.cas import TOUCH_INTERVAL_MS, CasStore, now_ms
from flywheel.cache.bazel.size_bound import SizeBound, cas_key
from flywheel.cache.tenancy import Cache
from flywheel.db.engine import Database
from flywheel.db.schema import ac_entries, caches
from flywheel.errors import FailedPrecondition, Invalid
from flywheel.storage.base import BlobStore

_REF = struct.Struct(">32sQ")

_AC_BY_NAME = (
    select(caches.c.is_public, caches.c.id, ac_entries.c.result, ac_entries.c.refs,
           ac_entries.c.accessed_at)
    .select_from(caches.outerjoin(ac_entries, (ac_entries.c.cache_id == caches.c.id)
                                  & (ac_entries.c.action_hash == bindparam("h"))))
    .where(caches.c.name == bindparam("cache"))
)


@dataclass(frozen=True)
class AcLookup:
    cache_public: bool
    result: bytes | None
    # Bookkeeping the lookup calls for, done by ``settle`` off the request path: blobs
    # storage lost, and the entry whose last access is worth refreshing.
    lost: tuple[str, ...] = ()
    touch: tuple[int, str] | None = None

    @property
    def unsettled(self) -> bool:
        return bool(self.lost) or self.touch is not None


def pack_refs(digests: list[Digest]) -> bytes:
    return b"".join(_REF.pack(bytes.fromhex(d.hash), d.size) for d in digests)


def unpack_refs(data: bytes) -> list[tuple[str, int]]:
    return [(h.hex(), size) for h, size in _REF.iter_unpack(data)]


class ActionCache:
    def __init__(self, db: Database, blobs: BlobStore, cas: CasStore, bound: SizeBound,
                 max_refs: int, clock: Callable[[], int] = now_ms) -> None:
        self._db = db
        self._blobs = blobs
        self._cas = cas
        self._bound = bound
        self.max_refs = max_refs
        self._clock = clock
        self._query = db.hot.prepare(_AC_BY_NAME)

    def get(self, cache_name: str, action_hash: str) -> AcLookup | None:
        """The entry if storage still holds every blob it needs; otherwise a miss. None
        when there is no such cache. Reads only; see ``settle``."""
        row = self._db.hot.run(self._query, {"cache": cache_name, "h": action_hash})
        if row is None:
            return None
        public, cache_id, result, refs, accessed = row
        if result is None:
            return AcLookup(bool(public), None)
        lost = tuple(h for h, size in unpack_refs(bytes(refs))
                     if self._blobs.size(cas_key(h)) != size)
        if lost:
            return AcLookup(bool(public), None, lost=lost)
        stale = self._clock() - accessed > TOUCH_INTERVAL_MS
        return AcLookup(bool(public), bytes(result),
                        touch=(cache_id, action_hash) if stale else None)

    def settle(self, lookup: AcLookup) -> None:
        if lookup.lost:
            self._cas.forget(lookup.lost)
        if lookup.touch is not None:
            cache_id, action_hash = lookup.touch
            with self._db.write() as conn:
                conn.execute(update(ac_entries).where(
                    ac_entries.c.cache_id == cache_id, ac_entries.c.action_hash == action_hash)
                    .values(accessed_at=self._clock()))

    def put(self, cache: Cache, action_hash: str, data: bytes) -> None:
        try:
            result = parse_action_result(data)
            needed = referenced_digests(result)
            trees = tree_digests(result)
        except ActionResultError as e:
            raise Invalid(str(e)) from None
        for tree in trees:
            blob = self._cas.read(cache, tree)
            if blob is None:
                raise FailedPrecondition(f"output tree {tree} is not in cache {cache.name!r}; "
                                         "upload it first")
            try:
                needed.extend(tree_file_digests(blob))
            except ActionResultError as e:
                raise Invalid(str(e)) from None
            if len(needed) > self.max_refs:
                break
        refs = sorted(set(needed), key=lambda d: d.hash)
        if len(refs) > self.max_refs:
            raise Invalid(f"the result names more than {self.max_refs} blobs, more than this "
                          "server accepts in one action-cache entry")
        self._require_held(cache, refs)
        self._bound.check_fits(len(data))
        now = self._clock()
        with self._db.write() as conn:
            old = conn.execute(select(ac_entries.c.size).where(
                ac_entries.c.cache_id == cache.id,
                ac_entries.c.action_hash == action_hash)).scalar()
            if old is not None:
                conn.execute(delete(ac_entries).where(ac_entries.c.cache_id == cache.id,
                                                      ac_entries.c.action_hash == action_hash))
            self._bound.add(conn, len(data) - (old or 0))
            conn.execute(ac_entries.insert().values(
                cache_id=cache.id, action_hash=action_hash, size=len(data), result=data,
                refs=pack_refs(refs), created_at=now, accessed_at=now))

    def _require_held(self, cache: Cache, digests: list[Digest]) -> None:
        missing = self._cas.find_missing(cache, digests)
        if missing:
            raise FailedPrecondition(
                f"{len(missing)} output blob(s) the result names are not in cache "
                f"{cache.name!r} (first: {missing[0]}); upload them first")

    def release(self, conn: Connection, cache: Cache) -> None:
        """Destroying a cache: its entries go, and so do their bytes from the bound."""
        freed = conn.execute(select(func.coalesce(func.sum(ac_entries.c.size), 0))
                             .where(ac_entries.c.cache_id == cache.id)).scalar()
        conn.execute(delete(ac_entries).where(ac_entries.c.cache_id == cache.id))
        self._bound.add(conn, -int(freed or 0))

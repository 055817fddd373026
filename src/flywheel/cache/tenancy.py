"""Caches (tenants): create, look up, configure, destroy."""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from flywheel.cache.upstream_config import Upstream, parse_upstreams
from flywheel.db.engine import Database
from flywheel.db.schema import caches, objects
from flywheel.errors import Conflict, Invalid, NotFound
from flywheel.nix import narinfo as narinfo_codec
from flywheel.nix.signing import SecretKey
from flywheel.nix.storepath import STORE_DIR

# A cache name is the first segment of its URLs (/<name>/...). Every other route with more
# than one segment starts with "_" (/_api, /_ui, /_state), which a name never does, so no
# plane added later can collide with a cache; the few one-segment routes (/healthz,
# /metrics, ...) cannot collide with /<name>/... either.
CACHE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,49}")
DEFAULT_PRIORITY = 41
DEFAULT_UPSTREAM_KEYS = ("cache.nixos.org-1",)
# What we store is a pusher's narinfo (at most MAX_NARINFO_BYTES) with our URL, file hash
# and signature added.
STORED_NARINFO_MAX_BYTES = narinfo_codec.MAX_NARINFO_BYTES + 4096


def check_cache_name(name: str) -> str:
    if not CACHE_NAME.fullmatch(name):
        raise Invalid(f"invalid cache name {name[:60]!r}: use 1-50 characters of a-z 0-9 . _ -, "
                      "starting with a letter or digit")
    return name


@dataclass(frozen=True)
class Cache:
    id: int
    name: str
    is_public: bool
    priority: int
    store_dir: str
    signing_key_text: str
    upstream_cache_key_names: tuple[str, ...]
    retention_period: int | None
    # Pull-through substituters, tried in order on a miss (see cache.nix.upstreams).
    upstreams: tuple[Upstream, ...] = ()

    @property
    def signing_key(self) -> SecretKey:
        return _parse_key(self.signing_key_text)

    @property
    def public_key(self) -> str:
        return self.signing_key.public_key().to_string()

    def nix_cache_info(self) -> str:
        return f"StoreDir: {self.store_dir}\nWantMassQuery: 1\nPriority: {self.priority}\n"


_CACHE_COLUMNS = (caches.c.id, caches.c.name, caches.c.is_public, caches.c.priority,
                  caches.c.store_dir, caches.c.signing_key, caches.c.upstream_cache_key_names,
                  caches.c.retention_period, caches.c.upstreams)
_CACHE_BY_NAME = select(*_CACHE_COLUMNS).where(caches.c.name == bindparam("name"))


@functools.lru_cache(maxsize=256)
def _parse_key(text: str) -> SecretKey:
    # Parsing checks the key pair, an ed25519 derivation: once per key and process, and
    # only when something is signed (most lookups never sign).
    return SecretKey.parse(text)


def _row_to_cache(row: Sequence[Any]) -> Cache:
    id_, name, is_public, priority, store_dir, key, upstream, retention, upstreams = row
    return Cache(id=id_, name=name, is_public=bool(is_public), priority=priority,
                 store_dir=store_dir, signing_key_text=key,
                 upstream_cache_key_names=tuple(json.loads(upstream)),
                 retention_period=retention, upstreams=parse_upstreams(json.loads(upstreams)))


def _check_priority(priority: int) -> int:
    if not 0 <= priority <= 10_000:
        raise Invalid("priority must be between 0 and 10000")
    return priority


DestroyHook = Callable[[Connection, "Cache"], None]


class CacheService:
    def __init__(self, db: Database, key_name_prefix: str) -> None:
        self._db = db
        self._key_name_prefix = key_name_prefix
        # Every access check on a cache route looks the cache up, so it takes the hot path.
        self._by_name = db.hot.prepare(_CACHE_BY_NAME)
        # What else a cache owns (the Bazel action cache) is released in the same
        # transaction that destroys it.
        self.on_destroy: list[DestroyHook] = []

    def create(self, name: str, *, is_public: bool = True, priority: int | None = None,
               signing_key: SecretKey | None = None,
               upstream_cache_key_names: tuple[str, ...] | None = None) -> Cache:
        check_cache_name(name)
        key = signing_key or SecretKey.generate(f"{self._key_name_prefix}-{name}-1")
        try:
            with self._db.write() as conn:
                conn.execute(insert(caches).values(
                    name=name, is_public=is_public,
                    priority=_check_priority(DEFAULT_PRIORITY if priority is None else priority),
                    store_dir=STORE_DIR, signing_key=key.to_string(), key_name=key.name,
                    upstream_cache_key_names=json.dumps(list(
                        DEFAULT_UPSTREAM_KEYS if upstream_cache_key_names is None
                        else upstream_cache_key_names)),
                    retention_period=None, created_at=int(time.time())))
        except IntegrityError:
            raise Conflict(f"cache {name!r} already exists") from None
        return self.get(name)

    def find(self, name: str) -> Cache | None:
        row = self._db.hot.run(self._by_name, {"name": name})
        return _row_to_cache(row) if row is not None else None

    def get(self, name: str) -> Cache:
        cache = self.find(name)
        if cache is None:
            raise NotFound(f"no cache named {name!r}")
        return cache

    def list(self) -> list[Cache]:
        with self._db.read() as conn:
            return [_row_to_cache(r) for r in
                    conn.execute(select(*_CACHE_COLUMNS).order_by(caches.c.name))]

    def stats(self, cache: Cache) -> tuple[int, int]:
        """(store paths, total NAR bytes) held by the cache."""
        with self._db.read() as conn:
            count, size = conn.execute(
                select(func.count(), func.coalesce(func.sum(objects.c.nar_size), 0))
                .where(objects.c.cache_id == cache.id)).one()
        return int(count), int(size)

    def configure(self, name: str, *, is_public: bool | None = None, priority: int | None = None,
                  upstream_cache_key_names: tuple[str, ...] | None = None,
                  regenerate_keypair: bool = False,
                  retention_period: int | Literal["Global"] | None = None,
                  upstreams: tuple[Upstream, ...] | None = None) -> Cache:
        """Change a cache's settings. A new signing key takes effect at once: narinfos
        signed by the old one are signed afresh when served until re-signed in storage
        (``PathService.resign_stale``)."""
        cache = self.get(name)
        values: dict[str, object] = {}
        if is_public is not None:
            values["is_public"] = is_public
        if priority is not None:
            values["priority"] = _check_priority(priority)
        if upstream_cache_key_names is not None:
            values["upstream_cache_key_names"] = json.dumps(list(upstream_cache_key_names))
        if upstreams is not None:
            values["upstreams"] = json.dumps([u.to_json() for u in upstreams])
        if retention_period is not None:
            values["retention_period"] = None if retention_period == "Global" \
                else retention_period
        if regenerate_keypair:
            suffix = cache.signing_key.name.rsplit("-", 1)[-1]
            generation = int(suffix) + 1 if suffix.isdigit() else 2
            new_key = SecretKey.generate(f"{self._key_name_prefix}-{name}-{generation}")
            values["signing_key"] = new_key.to_string()
            values["key_name"] = new_key.name
        if not values:
            return cache
        with self._db.write() as conn:
            conn.execute(update(caches).where(caches.c.id == cache.id).values(**values))
        return self.get(name)

    def destroy(self, name: str) -> None:
        cache = self.get(name)
        with self._db.write() as conn:
            for hook in self.on_destroy:
                hook(conn, cache)
            conn.execute(delete(objects).where(objects.c.cache_id == cache.id))
            conn.execute(delete(caches).where(caches.c.id == cache.id))

"""Caches (tenants): create, look up, configure, destroy."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from flywheel.api.cache_config import DEFAULT_PRIORITY, DEFAULT_UPSTREAM_KEYS
from flywheel.cache.nix.narinfos import signed_narinfo
from flywheel.db.hot import HotReads
from flywheel.db.schema import caches, objects
from flywheel.nix import narinfo as narinfo_codec
from flywheel.nix.signing import SecretKey
from flywheel.nix.storepath import STORE_DIR

# Names become URL prefixes beside our own top-level routes, so those are reserved.
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,49}")
RESERVED_NAMES = frozenset({"healthz", "readyz", "metrics", "status", "nix-cache-info", "api"})
# What we store is a pusher's narinfo (at most MAX_NARINFO_BYTES) with our URL, file hash
# and signature added.
STORED_NARINFO_MAX_BYTES = narinfo_codec.MAX_NARINFO_BYTES + 4096


class CacheError(Exception):
    """A cache operation was refused; the message is for the user."""


class CacheNotFound(CacheError):
    pass


class CacheExists(CacheError):
    pass


def check_cache_name(name: str) -> str:
    if not _NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise CacheError(
            f"invalid cache name {name!r}: use 1-50 characters of a-z 0-9 . _ -, starting with "
            f"a letter or digit, and none of: {', '.join(sorted(RESERVED_NAMES))}")
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

    @cached_property
    def signing_key(self) -> SecretKey:
        # Parsing checks the key pair, an ed25519 derivation; most lookups (access checks on
        # every Bazel request) never sign, so they do not pay for it.
        return SecretKey.parse(self.signing_key_text)

    @property
    def public_key(self) -> str:
        return self.signing_key.public_key().to_string()

    def nix_cache_info(self) -> str:
        return f"StoreDir: {self.store_dir}\nWantMassQuery: 1\nPriority: {self.priority}\n"


_CACHE_COLUMNS = (caches.c.id, caches.c.name, caches.c.is_public, caches.c.priority,
                  caches.c.store_dir, caches.c.signing_key, caches.c.upstream_cache_key_names,
                  caches.c.retention_period)
_CACHE_BY_NAME = select(*_CACHE_COLUMNS).where(caches.c.name == bindparam("name"))


def _row_to_cache(row: Sequence[Any]) -> Cache:
    id_, name, is_public, priority, store_dir, key, upstream, retention = row
    return Cache(id=id_, name=name, is_public=bool(is_public), priority=priority,
                 store_dir=store_dir, signing_key_text=key,
                 upstream_cache_key_names=tuple(json.loads(upstream)),
                 retention_period=retention)


def _check_priority(priority: int) -> int:
    if not 0 <= priority <= 10_000:
        raise CacheError("priority must be between 0 and 10000")
    return priority


class CacheService:
    def __init__(self, engine: Engine, reads: HotReads, key_name_prefix: str) -> None:
        self._engine = engine
        self._key_name_prefix = key_name_prefix
        self._reads = reads
        # Every access check on a cache route looks the cache up, so it takes the hot path.
        self._by_name = reads.prepare(_CACHE_BY_NAME)

    def create(self, name: str, *, is_public: bool = True, priority: int = DEFAULT_PRIORITY,
               signing_key: SecretKey | None = None,
               upstream_cache_key_names: tuple[str, ...] = DEFAULT_UPSTREAM_KEYS) -> Cache:
        check_cache_name(name)
        key = signing_key or SecretKey.generate(f"{self._key_name_prefix}-{name}-1")
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(caches).values(
                    name=name, is_public=is_public, priority=_check_priority(priority),
                    store_dir=STORE_DIR, signing_key=key.to_string(),
                    upstream_cache_key_names=json.dumps(list(upstream_cache_key_names)),
                    retention_period=None, created_at=int(time.time())))
        except IntegrityError:
            raise CacheExists(f"cache {name!r} already exists") from None
        return self.get(name)

    def find(self, name: str) -> Cache | None:
        row = self._reads.run(self._by_name, {"name": name})
        return _row_to_cache(row) if row is not None else None

    def get(self, name: str) -> Cache:
        cache = self.find(name)
        if cache is None:
            raise CacheNotFound(f"no cache named {name!r}")
        return cache

    def list(self) -> list[Cache]:
        with self._engine.connect() as conn:
            return [_row_to_cache(r) for r in
                    conn.execute(select(*_CACHE_COLUMNS).order_by(caches.c.name))]

    def stats(self, cache: Cache) -> tuple[int, int]:
        """(store paths, total NAR bytes) held by the cache."""
        with self._engine.connect() as conn:
            count, size = conn.execute(
                select(func.count(), func.coalesce(func.sum(objects.c.nar_size), 0))
                .where(objects.c.cache_id == cache.id)).one()
        return int(count), int(size)

    def configure(self, name: str, *, is_public: bool | None = None, priority: int | None = None,
                  upstream_cache_key_names: tuple[str, ...] | None = None,
                  regenerate_keypair: bool = False) -> Cache:
        cache = self.get(name)
        values: dict[str, object] = {}
        if is_public is not None:
            values["is_public"] = is_public
        if priority is not None:
            values["priority"] = _check_priority(priority)
        if upstream_cache_key_names is not None:
            values["upstream_cache_key_names"] = json.dumps(list(upstream_cache_key_names))
        new_key = None
        if regenerate_keypair:
            suffix = cache.signing_key.name.rsplit("-", 1)[-1]
            generation = int(suffix) + 1 if suffix.isdigit() else 2
            new_key = SecretKey.generate(f"{self._key_name_prefix}-{name}-{generation}")
            values["signing_key"] = new_key.to_string()
        if not values:
            return cache
        with self._engine.begin() as conn:
            conn.execute(update(caches).where(caches.c.id == cache.id).values(**values))
            if new_key is not None:
                _resign_all(conn, cache, new_key)
        return self.get(name)

    def destroy(self, name: str) -> None:
        cache = self.get(name)
        with self._engine.begin() as conn:
            conn.execute(delete(objects).where(objects.c.cache_id == cache.id))
            conn.execute(delete(caches).where(caches.c.id == cache.id))


def _resign_all(conn: Connection, cache: Cache, key: SecretKey) -> None:
    """Re-render every stored narinfo so hits stay one lookup after a key change."""
    rows = conn.execute(select(objects.c.id, objects.c.narinfo)
                        .where(objects.c.cache_id == cache.id)).all()
    for obj_id, text in rows:
        info = narinfo_codec.parse(text, cache.store_dir, STORED_NARINFO_MAX_BYTES)
        conn.execute(update(objects).where(objects.c.id == obj_id)
                     .values(narinfo=signed_narinfo(info, key, cache.store_dir,
                                                    cache.signing_key.name)))

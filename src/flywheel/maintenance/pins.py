"""Pins: store paths whose whole closure garbage collection keeps, whatever the cache's
retention says. A pin has a name (by default the path's own name) and names one path of
one cache; pinning a name again moves it to the new path (a release channel, say)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, or_, select, update

from flywheel.cache.tenancy import Cache
from flywheel.db.engine import Database
from flywheel.db.schema import objects, pins
from flywheel.errors import Invalid, NotFound
from flywheel.nix.storepath import parse_base_name, parse_path

PIN_NAME = re.compile(r"[A-Za-z0-9+_.][A-Za-z0-9+_.=?-]{0,254}")


@dataclass(frozen=True)
class Pin:
    name: str
    store_path: str
    created_at: int


def check_pin_name(name: str) -> str:
    if not PIN_NAME.fullmatch(name):
        raise Invalid(f"invalid pin name {name[:60]!r}: use up to 255 characters of "
                      "A-Z a-z 0-9 + _ . = ? -, not starting with - or =")
    return name


class PinService:
    def __init__(self, db: Database) -> None:
        self._db = db

    def pin(self, cache: Cache, store_path: str, name: str | None = None) -> Pin:
        try:
            path = parse_path(store_path, cache.store_dir)
        except ValueError as e:
            raise Invalid(str(e)) from None
        name = check_pin_name(name or path.name)
        now = int(time.time())
        with self._db.write() as conn:
            held = conn.execute(select(objects.c.store_path).where(
                objects.c.cache_id == cache.id,
                objects.c.store_path_hash == path.hash_part)).scalar()
            if held is None:
                raise NotFound(f"{store_path} is not in cache {cache.name!r}")
            values = {"store_path_hash": path.hash_part, "store_path": held, "created_at": now}
            if not conn.execute(update(pins).where(pins.c.cache_id == cache.id,
                                                   pins.c.name == name)
                                .values(**values)).rowcount:
                conn.execute(insert(pins).values(cache_id=cache.id, name=name, **values))
        return Pin(name, held, now)

    def unpin(self, cache: Cache, name_or_path: str) -> bool:
        """Remove the pin of that name, or every pin of that store path."""
        with self._db.write() as conn:
            return bool(conn.execute(delete(pins).where(
                pins.c.cache_id == cache.id,
                or_(pins.c.name == name_or_path, pins.c.store_path == name_or_path))).rowcount)

    def list(self, cache: Cache) -> list[Pin]:
        with self._db.read() as conn:
            return [Pin(*r) for r in conn.execute(
                select(pins.c.name, pins.c.store_path, pins.c.created_at)
                .where(pins.c.cache_id == cache.id).order_by(pins.c.name))]


def protected(conn: Connection, cache_id: int) -> set[str]:
    """Hash parts of every path the cache's pins reach through references (the closure,
    as far as the cache holds it)."""
    todo = list(conn.execute(select(pins.c.store_path_hash)
                             .where(pins.c.cache_id == cache_id)).scalars())
    seen: set[str] = set()
    while todo:
        batch = [h for h in dict.fromkeys(todo[:500]) if h not in seen]
        todo = todo[500:]
        seen.update(batch)
        for refs in conn.execute(select(objects.c.refs).where(
                objects.c.cache_id == cache_id, objects.c.store_path_hash.in_(batch))).scalars():
            for ref in refs.split():
                try:
                    hash_part = parse_base_name(ref).hash_part
                except ValueError:
                    continue  # checked when the narinfo was stored; never expected here
                if hash_part not in seen:
                    todo.append(hash_part)
    return seen

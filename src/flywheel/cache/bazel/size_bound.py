"""The bound on Bazel bytes: a running total kept in the same transactions that add and
evict, and least-recently-used eviction to make room.

The total is the sum of a few shard rows, so concurrent writers (on one server, or on
replicas sharing PostgreSQL) do not queue for one row. Each shard also holds a reservation:
the bytes it may count without asking anyone, and the reservations never add up to more than
the bound. A write counts itself against one shard's reservation in one conditional update
(locking only that row); only when that reservation is used up does it take the one lock
(SQLite's write lock, or an advisory lock on PostgreSQL) to reserve more, taking back what
other shards reserved but did not use, and evicting what was used least recently if even
that is not enough. So the bound holds exactly, whatever commits at the same time."""

from __future__ import annotations

import random

from sqlalchemy import Connection, delete, func, literal, select, update

from flywheel.db.engine import lock, try_lock
from flywheel.db.schema import ac_entries, bazel_usage, cas_blobs
from flywheel.errors import StorageFull
from flywheel.storage.base import BlobStore

_EVICT_BATCH = 64
USAGE_SHARDS = 16
_ROOM_LOCK = "bazel-bound"


def cas_key(hash_: str) -> str:
    return f"cas/{hash_}"


def cas_lock(hash_: str) -> str:
    """What a transaction holds while it records or deletes a CAS blob's bytes."""
    return f"blob:{cas_key(hash_)}"


class SizeBound:
    def __init__(self, max_size: int | None, blobs: BlobStore) -> None:
        self.max_size = max_size
        self._blobs = blobs

    def check_fits(self, size: int) -> None:
        if self.max_size is not None and size > self.max_size:
            raise StorageFull(f"{size} bytes exceed the Bazel cache's size bound "
                              f"({self.max_size} bytes)")

    def add(self, conn: Connection, delta: int) -> None:
        """Account ``delta`` more bytes, evicting what was used least recently to make room
        (a negative delta only subtracts)."""
        shard = random.randint(1, USAGE_SHARDS)  # spreading writes, not secrecy
        if delta <= 0 or self.max_size is None:
            _count(conn, shard, delta)
            return
        self.check_fits(delta)
        within = conn.execute(update(bazel_usage).where(
            bazel_usage.c.id == shard,
            bazel_usage.c.bytes + delta <= bazel_usage.c.reserved)
            .values(bytes=bazel_usage.c.bytes + delta)).rowcount
        if not within:
            self._reserve(conn, shard, delta)

    def _reserve(self, conn: Connection, shard: int, delta: int) -> None:
        """Grow ``shard``'s reservation so ``delta`` fits in it, and count ``delta``."""
        assert self.max_size is not None
        lock(conn, _ROOM_LOCK)
        used, reserved = _shard(conn, shard)
        short = delta - (reserved - used)
        if self._reserved(conn) + short > self.max_size:
            # Take back what shards reserved and did not use, then make room if needed.
            conn.execute(update(bazel_usage).values(reserved=bazel_usage.c.bytes))
            self._make_room(conn, delta, shard)
        free = self.max_size - self._reserved(conn)
        used, reserved = _shard(conn, shard)
        short = delta - (reserved - used)
        # A little more than needed, so the next writes on this shard need no lock.
        grant = short + max(0, min(free - short, self.max_size // 64))
        conn.execute(update(bazel_usage).where(bazel_usage.c.id == shard).values(
            bytes=bazel_usage.c.bytes + delta, reserved=bazel_usage.c.reserved + grant))

    def _reserved(self, conn: Connection) -> int:
        return int(conn.execute(select(func.coalesce(func.sum(bazel_usage.c.reserved), 0)))
                   .scalar() or 0)

    def usage(self, conn: Connection) -> int:
        return int(conn.execute(select(func.coalesce(func.sum(bazel_usage.c.bytes), 0)))
                   .scalar() or 0)

    def stored(self, conn: Connection) -> int:
        """What the total should be: the bytes of every row it counts."""
        cas = conn.execute(select(func.coalesce(func.sum(cas_blobs.c.size), 0))).scalar()
        ac = conn.execute(select(func.coalesce(func.sum(ac_entries.c.size), 0))).scalar()
        return int(cas or 0) + int(ac or 0)

    def reset(self, conn: Connection) -> None:
        lock(conn, _ROOM_LOCK)
        conn.execute(update(bazel_usage).values(bytes=0, reserved=0))
        stored = self.stored(conn)
        conn.execute(update(bazel_usage).where(bazel_usage.c.id == 1)
                     .values(bytes=stored, reserved=stored))

    def trim(self, conn: Connection) -> None:
        """Evict until the total is within the bound (after the bound was lowered)."""
        if self.max_size is not None:
            lock(conn, _ROOM_LOCK)
            conn.execute(update(bazel_usage).values(reserved=bazel_usage.c.bytes))
            self._make_room(conn, 0, 1)

    def _make_room(self, conn: Connection, needed: int, shard: int) -> None:
        assert self.max_size is not None
        usage = self.usage(conn)
        while usage + needed > self.max_size:
            candidates = conn.execute(
                select(literal("cas").label("kind"), cas_blobs.c.hash.label("key"),
                       literal(0).label("cache_id"), cas_blobs.c.size, cas_blobs.c.accessed_at)
                .union_all(select(literal("ac"), ac_entries.c.action_hash,
                                  ac_entries.c.cache_id, ac_entries.c.size,
                                  ac_entries.c.accessed_at))
                .order_by("accessed_at").limit(_EVICT_BATCH)).all()
            freed = 0
            for kind, key, cache_id, size, _ in candidates:
                if usage - freed + needed <= self.max_size:
                    break
                if kind == "cas":
                    # A blob another transaction is recording or deleting right now is
                    # skipped (it is either in use or going anyway).
                    if not try_lock(conn, cas_lock(key)):
                        continue
                    conn.execute(delete(cas_blobs).where(cas_blobs.c.hash == key))
                    # Under its lock, with its row gone: nothing can re-record the blob
                    # until this transaction ends, and an upload that placed it meanwhile
                    # sees it missing and places it again.
                    self._blobs.delete(cas_key(key))
                else:
                    conn.execute(delete(ac_entries).where(ac_entries.c.cache_id == cache_id,
                                                          ac_entries.c.action_hash == key))
                freed += size
            if not freed:
                raise StorageFull("the Bazel cache is full and nothing is left to evict")
            usage -= freed
            _count(conn, shard, -freed)


def _shard(conn: Connection, shard: int) -> tuple[int, int]:
    used, reserved = conn.execute(select(bazel_usage.c.bytes, bazel_usage.c.reserved)
                                  .where(bazel_usage.c.id == shard)).one()
    return int(used), int(reserved)


def _count(conn: Connection, shard: int, delta: int) -> None:
    """Count ``delta`` bytes on ``shard`` without asking for room: what is released (or,
    with no bound, anything) moves the reservation along, so unused room stays as it was."""
    conn.execute(update(bazel_usage).where(bazel_usage.c.id == shard).values(
        bytes=bazel_usage.c.bytes + delta, reserved=bazel_usage.c.reserved + delta))

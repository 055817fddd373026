"""The bound on Bazel bytes: a running total kept in the same transactions that add and
evict, and least-recently-used eviction to make room.

Callers hold a write transaction (which on SQLite holds the write lock from its start), so
the total read here is the total when the transaction commits: concurrent uploaders in
any process cannot overshoot the bound together."""

from __future__ import annotations

from sqlalchemy import Connection, delete, func, literal, select, update

from flywheel.db.schema import ac_entries, bazel_usage, cas_blobs
from flywheel.errors import StorageFull
from flywheel.storage.base import BlobStore

_EVICT_BATCH = 64


def cas_key(hash_: str) -> str:
    return f"cas/{hash_}"


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
        if delta > 0 and self.max_size is not None:
            self.check_fits(delta)
            self._make_room(conn, delta)
        conn.execute(update(bazel_usage).where(bazel_usage.c.id == 1)
                     .values(bytes=bazel_usage.c.bytes + delta))

    def usage(self, conn: Connection) -> int:
        return int(conn.execute(select(bazel_usage.c.bytes)
                                .where(bazel_usage.c.id == 1)).scalar() or 0)

    def stored(self, conn: Connection) -> int:
        """What the total should be: the bytes of every row it counts."""
        cas = conn.execute(select(func.coalesce(func.sum(cas_blobs.c.size), 0))).scalar()
        ac = conn.execute(select(func.coalesce(func.sum(ac_entries.c.size), 0))).scalar()
        return int(cas or 0) + int(ac or 0)

    def reset(self, conn: Connection) -> None:
        conn.execute(update(bazel_usage).where(bazel_usage.c.id == 1)
                     .values(bytes=self.stored(conn)))

    def _make_room(self, conn: Connection, needed: int) -> None:
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
            if not candidates:
                raise StorageFull("the Bazel cache is full and nothing is left to evict")
            freed = 0
            for kind, key, cache_id, size, _ in candidates:
                if usage - freed + needed <= self.max_size:
                    break
                if kind == "cas":
                    conn.execute(delete(cas_blobs).where(cas_blobs.c.hash == key))
                    # Under the write lock, with its row gone: nothing can re-record the
                    # blob until this transaction ends, and an upload that placed it
                    # meanwhile sees it missing and places it again.
                    self._blobs.delete(cas_key(key))
                else:
                    conn.execute(delete(ac_entries).where(ac_entries.c.cache_id == cache_id,
                                                          ac_entries.c.action_hash == key))
                freed += size
            usage -= freed
            conn.execute(update(bazel_usage).where(bazel_usage.c.id == 1)
                         .values(bytes=bazel_usage.c.bytes - freed))

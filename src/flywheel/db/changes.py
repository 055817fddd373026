"""How a process learns that the database may have changed since it last read it, without
asking the database: what lets hot reads answer from memory (``flywheel.db.hot``).

Every write transaction ends by giving a shared *generation* a new value. Processes on this
machine share it through a small memory-mapped file beside the database (SQLite) or in the
data dir (PostgreSQL); the writer sets it after its commit and before it answers, so once a
write has been answered no process on the machine can read the old generation. Replicas on
other machines share a PostgreSQL database: there every write transaction also sends a
notification, delivered with its commit, and each process keeps a listening connection that
counts them. Until that connection is listening (at start, after it broke) the generation is
unknown and nothing is answered from memory.
"""

from __future__ import annotations

import logging
import mmap
import os
import random
import struct
import threading
from pathlib import Path

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)

CHANNEL = "flywheel_changes"
_SLOT = struct.Struct("=Q")
# How long a broken listening connection waits before it tries again (seconds).
_RECONNECT_SECONDS = 1.0
# How often the listening thread looks up from its connection to see if it should stop.
_POLL_SECONDS = 1.0

Generation = tuple[int, int]


class Changes:
    def __init__(self, engine: Engine, path: Path | None) -> None:
        self._map = _open_map(path) if path is not None else None
        # Without a shared file (PostgreSQL opened with no data dir, as tests do) this
        # process's own writes change the value directly; the listener covers the others.
        self._own = 0
        self._notified = _Listener(engine) if engine.dialect.name == "postgresql" else None

    def current(self) -> Generation | None:
        """A value that differs from every earlier one once any write has committed since;
        None while it cannot be known."""
        if self._notified is None:
            if self._map is None:
                return None   # other processes' writes would go unseen: keep nothing
            return _SLOT.unpack_from(self._map)[0], 0
        count = self._notified.count()
        if count is None:
            return None
        return (_SLOT.unpack_from(self._map)[0] if self._map is not None else self._own), count

    def announce(self, conn: Connection) -> None:
        """Inside a write transaction: tell the other replicas once it commits."""
        if self._notified is not None:
            conn.execute(text("SELECT pg_notify(:c, '')"), {"c": CHANNEL})

    def bump(self) -> None:
        """After a write transaction (committed or not: a failed commit's outcome may be
        unknown)."""
        # A random value rather than an increment: two writers bumping at once can never
        # leave the old value in place, and no lock is needed across processes.
        value = random.getrandbits(64)
        if self._map is not None:
            _SLOT.pack_into(self._map, 0, value)
        else:
            self._own = value

    def close(self) -> None:
        if self._notified is not None:
            self._notified.close()


def _open_map(path: Path) -> mmap.mmap | None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        log.warning("cannot share database changes through %s (%s): reads are not kept in "
                    "memory", path, e)
        return None
    try:
        if os.fstat(fd).st_size < _SLOT.size:
            os.ftruncate(fd, _SLOT.size)
        return mmap.mmap(fd, _SLOT.size)
    finally:
        os.close(fd)


class _Listener:
    """A connection of its own, in a thread of its own, counting notifications."""

    def __init__(self, engine: Engine) -> None:
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False)
        self._count: int | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def count(self) -> int | None:
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(target=self._run, daemon=True,
                                                    name="flywheel-db-changes")
                    self._thread.start()
        return self._count

    def _run(self) -> None:
        import psycopg

        seen = 0
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    # Anything written while nobody listened is unknown: a new value.
                    seen += 1
                    self._count = seen
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=_POLL_SECONDS):
                            seen += 1
                            self._count = seen
            except Exception as e:  # the database went away: read it directly meanwhile
                self._count = None
                if not self._stop.is_set():
                    log.warning("listening for database changes failed (%s); retrying", e)
                    self._stop.wait(_RECONNECT_SECONDS)
        self._count = None

    def close(self) -> None:
        self._stop.set()

"""Last-access times written off the request path: a hit only notes the row, and a
background thread writes the noted rows' times in one short transaction every few seconds,
so a busy read path costs no write per hit (and a row is noted at most once a minute)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Column, update

from flywheel.db.engine import Database

log = logging.getLogger(__name__)

# A row's time is refreshed when it is older than this (seconds).
STALE_AFTER = 60
_FLUSH_SECONDS = 5.0
_BATCH = 500


class AccessTimes:
    def __init__(self, db: Database, id_column: Column[int], time_column: Column[int],
                 clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._id = id_column
        self._time = time_column
        self._clock = clock
        self._pending: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def seen(self, row_id: int, accessed_at: int) -> None:
        """A hit on the row whose recorded time is ``accessed_at``."""
        if self._clock() - accessed_at < STALE_AFTER:
            return
        with self._lock:
            self._pending.add(row_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="flywheel-touch",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(_FLUSH_SECONDS)
            try:
                self.flush()
            except Exception:  # the next round tries again; a lost touch only ages a row
                log.exception("recording last-access times failed")

    def flush(self) -> None:
        with self._lock:
            ids, self._pending = sorted(self._pending), set()
        now = int(self._clock())
        for i in range(0, len(ids), _BATCH):
            with self._db.write() as conn:
                conn.execute(update(self._time.table).where(self._id.in_(ids[i:i + _BATCH]))
                             .values({self._time.name: now}))

"""New valid store paths, read from the Nix database.

Why poll the database rather than use inotify on /nix/store: a directory appears in the
store while its contents are still being written, and only the database row says the path
is complete (Nix registers a path after writing it, references in the same transaction).
Rows get increasing ids and SQLite serialises writers, so ``id > last seen`` never misses
a committed path. The query is one indexed range scan, cheap at 2 Hz; inotify on the
database directory would only ever say "look again", at the price of a dependency."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from flywheel.client.errors import ClientError


def default_db(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get("NIX_STATE_DIR") or "/nix/var/nix") / "db" / "db.sqlite"


class StoreDb:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            # Read-only: this process must never be able to damage the store's database.
            self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10,
                                         check_same_thread=False)
            self._conn.execute("SELECT 1 FROM ValidPaths LIMIT 1").fetchall()
        except sqlite3.Error as e:
            raise ClientError(f"cannot read the Nix database {path}: {e} (watch-store needs "
                              "read access to the store's database)") from None

    def last_id(self) -> int:
        row = self._conn.execute("SELECT max(id) FROM ValidPaths").fetchone()
        return int(row[0] or 0)

    def paths_after(self, last_id: int) -> list[tuple[int, str]]:
        """Paths registered after ``last_id``, oldest first."""
        try:
            rows = self._conn.execute("SELECT id, path FROM ValidPaths WHERE id > ? "
                                      "ORDER BY id", (last_id,)).fetchall()
        except sqlite3.OperationalError as e:
            # Nix holds the write lock for long transactions; try again next poll.
            if "locked" in str(e) or "busy" in str(e):
                return []
            raise ClientError(f"reading {self.path}: {e}") from None
        return [(int(i), str(p)) for i, p in rows]

    def close(self) -> None:
        self._conn.close()

"""Read queries on the request path, run on a per-thread DBAPI connection.

A narinfo hit should cost one indexed lookup. Going through SQLAlchemy's connection and
result machinery costs several times the lookup itself, so hot reads compile their
statement once for the engine's dialect and run it on a DBAPI connection kept per thread.
Writes and everything else use the engine normally.

Most hot reads ask again what they asked a moment ago (every substitution asks for the same
narinfos), and even one indexed query costs far more in a server than in a loop: the
driver releases the interpreter lock and the server's own threads take it. So answers are
also kept in memory, each under the database generation (``flywheel.db.changes``) it was
read at, and given again only while that generation is current: any committed write, by any
process or replica, makes every kept answer stale at once."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from flywheel.db.changes import Changes, Generation

# Bytes of answers one process keeps in memory (keys and rows: text sizes plus an estimate
# per value); past it the oldest are dropped first.
MEMO_BYTES = 16 << 20
_ROW_OVERHEAD = 200
_VALUE_OVERHEAD = 50

Row = tuple[Any, ...]


class HotReads:
    def __init__(self, engine: Engine, changes: Changes, memo_bytes: int = MEMO_BYTES) -> None:
        self._engine = engine
        self._local = threading.local()
        self._changes = changes
        self._memo: dict[tuple[Any, ...], tuple[Generation, Row | None, int]] = {}
        self._memo_generation: Generation | None = None
        self._memo_bytes = 0
        self._memo_limit = memo_bytes
        self._memo_lock = threading.Lock()

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._engine.raw_connection()
            if self._engine.dialect.name != "sqlite":
                # Without autocommit a long-lived connection would read one old snapshot.
                conn.driver_connection.autocommit = True  # type: ignore[union-attr]
            self._local.conn = conn
            # The driver's own connection skips the pool proxy on every call; the pool
            # still owns it (for invalidation and shutdown) through ``conn``.
            self._local.driver = conn.driver_connection
        return conn

    def prepare(self, stmt: ClauseElement) -> HotQuery:
        return HotQuery(self, stmt)

    def run(self, query: HotQuery, values: Mapping[str, Any]) -> Row | None:
        # Read before the query: a write committing in between leaves a stale generation on
        # a fresh answer (read again next time), never a current one on a stale answer.
        generation = self._changes.current()
        if generation is None:
            return self._query(query, values)
        key = (query, *values.items())
        kept = self._memo.get(key)
        if kept is not None and kept[0] == generation:
            return kept[1]
        row = self._query(query, values)
        self._keep(key, generation, row)
        return row

    def _keep(self, key: tuple[Any, ...], generation: Generation, row: Row | None) -> None:
        size = _cost(key) + _cost(row)
        if size > self._memo_limit:
            return
        with self._memo_lock:
            if generation != self._memo_generation:
                if generation != self._changes.current():
                    return  # read under a generation that has passed already
                # Everything kept was read under an older one: start over.
                self._memo.clear()
                self._memo_bytes = 0
                self._memo_generation = generation
            previous = self._memo.pop(key, None)
            if previous is not None:
                self._memo_bytes -= previous[2]
            while self._memo and self._memo_bytes + size > self._memo_limit:
                self._memo_bytes -= self._memo.pop(next(iter(self._memo)))[2]
            self._memo[key] = (generation, row, size)
            self._memo_bytes += size

    def _query(self, query: HotQuery, values: Mapping[str, Any]) -> Row | None:
        params = query.bind(values)
        for attempt in (1, 2):
            conn = self._connection()
            try:
                cur = self._local.driver.cursor()
                try:
                    cur.execute(query.sql, params)
                    row = cur.fetchone()
                finally:
                    cur.close()
                return tuple(row) if row is not None else None
            except self._engine.dialect.loaded_dbapi.Error:
                # A broken connection (database restarted): replace it and try once more.
                self._local.conn = None
                with contextlib.suppress(Exception):  # already broken; nothing to release
                    conn.invalidate()
                if attempt == 2:
                    raise
        return None

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _cost(values: tuple[Any, ...] | None) -> int:
    """Bytes a kept key or row takes, roughly: its texts and a share per value."""
    if values is None:
        return _ROW_OVERHEAD
    return _ROW_OVERHEAD + sum(
        _cost(v) - _ROW_OVERHEAD if isinstance(v, tuple) else
        _VALUE_OVERHEAD + (len(v) if isinstance(v, str | bytes) else 0) for v in values)


class HotQuery:
    def __init__(self, reads: HotReads, stmt: ClauseElement) -> None:
        compiled = stmt.compile(dialect=reads._engine.dialect)
        assert isinstance(compiled, SQLCompiler)
        self.sql = str(compiled)
        self._positional = compiled.positional
        self._order = tuple(compiled.positiontup or ())
        self._defaults = {k: v for k, v in compiled.params.items() if v is not None}

    def bind(self, values: Mapping[str, Any]) -> Any:
        if self._positional:
            defaults = self._defaults
            return tuple(values[k] if k in values else defaults[k] for k in self._order)
        return {**self._defaults, **values}

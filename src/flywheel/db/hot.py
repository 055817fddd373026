"""Read queries on the request path, run on a per-thread DBAPI connection.

A narinfo hit should cost one indexed lookup. Going through SQLAlchemy's connection and
result machinery costs several times the lookup itself, so hot reads compile their
statement once for the engine's dialect and run it on a DBAPI connection kept per thread.
Writes and everything else use the engine normally."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement


class HotReads:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = threading.local()

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

    def run(self, query: HotQuery, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
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

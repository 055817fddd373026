"""The database: engine creation, read and write transactions, schema migration."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Insert, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from flywheel.db.hot import HotReads
from flywheel.errors import StorageFull, Unavailable

MIGRATIONS = Path(__file__).parent / "migrations"
_WRITE = "flywheel_write"


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Transactions are begun by us (below), not by the driver's guesswork, which would
    # run a read-then-write outside any transaction and lose concurrent updates.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # WAL lets readers in every worker proceed while one writer commits; NORMAL sync is
    # durable at checkpoints and safe against corruption, which is what WAL is designed for.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # A write transaction takes the write lock when it begins, so what it reads stays true
    # until it commits (a size bound checked, then added to, holds across processes).
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE)
                         else "BEGIN")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False},
                               pool_size=8, max_overflow=16)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=16)


class Database:
    """Reads and writes as short transactions; a database that cannot be reached or stays
    locked is ``Unavailable`` (503), never an internal error."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**{_WRITE: True})
        self.hot = HotReads(engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with _unavailable_on_failure(), self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        with _unavailable_on_failure(), self._writer.begin() as conn:
            yield conn

    def close(self) -> None:
        self.hot.close()
        self.engine.dispose()


@contextlib.contextmanager
def _unavailable_on_failure() -> Iterator[None]:
    try:
        yield
    except OperationalError as e:
        if "full" in str(e.orig):  # SQLite's SQLITE_FULL: "database or disk is full"
            raise StorageFull("the server's storage is full") from e
        raise Unavailable("the metadata database is unavailable; try again") from e


def insert_ignore(conn: Connection, table: Table) -> Insert:
    """INSERT that leaves an existing row alone (a unique-key collision: someone else added
    the same thing first); a foreign-key failure still raises."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def migrate(engine: Engine) -> None:
    # Imported here: only the process that migrates needs Alembic in memory.
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")

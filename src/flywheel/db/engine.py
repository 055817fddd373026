"""The database: engine creation, read and write transactions, schema migration."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Insert, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from flywheel.db.changes import Changes
from flywheel.db.hot import HotReads
from flywheel.errors import FailedPrecondition, StorageFull, Unavailable

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


def driver_url(url: str) -> str:
    """``postgresql://`` (as libpq and every PostgreSQL tool write it) goes through psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def make_engine(url: str) -> Engine:
    url = driver_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False},
                               pool_size=8, max_overflow=16)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # SQLAlchemy's pool keeps connections per process; pre-ping replaces one a database
    # restart broke before a request sees it.
    return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=16,
                         pool_recycle=1800,
                         # An INSERT ... ON CONFLICT DO NOTHING tells by its row count
                         # whether it inserted; psycopg reports it only when asked to.
                         execution_options={"preserve_rowcount": True})


class Database:
    """Reads and writes as short transactions; a database that cannot be reached or stays
    locked is ``Unavailable`` (503), never an internal error."""

    def __init__(self, engine: Engine, local_dir: Path | None = None) -> None:
        """``local_dir``: where this machine's processes share the generation of a database
        that is not a file (PostgreSQL); a SQLite database shares it beside its file."""
        self.engine = engine
        self._writer = engine.execution_options(**{_WRITE: True})
        self.changes = Changes(engine, _changes_path(engine, local_dir))
        self.hot = HotReads(engine, self.changes)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with _unavailable_on_failure(), self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        try:
            with _unavailable_on_failure(), self._writer.begin() as conn:
                yield conn
                self.changes.announce(conn)
        finally:
            self.changes.bump()

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold ``name`` against every process and replica on a shared PostgreSQL database
        while the block runs (in a transaction kept open for it). With SQLite there is
        nothing to take: holding its write lock that long would stop every other write."""
        if self.dialect != "postgresql":
            yield
            return
        with _unavailable_on_failure(), self.engine.begin() as conn:
            lock(conn, name)
            yield

    def close(self) -> None:
        self.hot.close()
        self.changes.close()
        self.engine.dispose()


def _changes_path(engine: Engine, local_dir: Path | None) -> Path | None:
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if not database or database.startswith("file:"):  # no plain path to sit beside
            return None
        return Path(database).with_name(Path(database).name + "-changes")
    return local_dir / "db-changes" if local_dir is not None else None


def lock(conn: Connection, *names: str) -> None:
    """Hold ``names`` until the write transaction ends, against every process and replica.

    SQLite's write transactions already exclude each other, so there is nothing to take.
    PostgreSQL has no global write lock: a transaction that must not interleave with another
    over the same content (placing bytes and recording them, deleting them with their row)
    takes an advisory lock per name, in a fixed order so two transactions never deadlock."""
    if conn.dialect.name != "postgresql":
        return
    for name in sorted(set(names)):
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:n, 0))"), {"n": name})


def try_lock(conn: Connection, name: str) -> bool:
    """Take ``name`` (as ``lock``) if nobody holds it; False at once otherwise."""
    if conn.dialect.name != "postgresql":
        return True
    return bool(conn.execute(text("SELECT pg_try_advisory_xact_lock(hashtextextended(:n, 0))"),
                             {"n": name}).scalar())


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


class SchemaOutOfDate(FailedPrecondition):
    """The database was made by an older version; ``flywheel db upgrade`` brings it up."""


def _alembic_config(conn: Connection | None = None) -> Any:
    # Imported here: only a process that checks or migrates needs Alembic in memory.
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _migration_lock(conn: Connection) -> None:
    # Replicas starting together on an empty database: one creates the schema, the others
    # wait and then find it current.
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended('flywheel-migrate', 0))"))


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to the newest revision; returns (revision before, revision now)."""
    from alembic import command

    with engine.begin() as conn:
        _migration_lock(conn)
        before = current_revision(conn)
        command.upgrade(_alembic_config(conn), "head")
        return before, head_revision()


def ensure_schema(engine: Engine) -> None:
    """Create the schema in an empty database (a first start); refuse one made by an older
    version, whose upgrade is an operator's decision: with replicas sharing the database,
    the others may still run the old code."""
    with engine.begin() as conn:
        _migration_lock(conn)
        current = current_revision(conn)
        head = head_revision()
        if current == head:
            return
        if current is not None:
            raise SchemaOutOfDate(
                f"the database schema is at revision {current}, this version needs {head}: "
                "run `flywheel db upgrade` (with the same --database-url or --data-dir)")
    migrate(engine)

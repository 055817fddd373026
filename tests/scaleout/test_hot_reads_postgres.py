"""Answers kept in memory on replicas that share one PostgreSQL database: a write on one
machine reaches the others' memory by notification, and while a replica cannot hear them it
reads the database instead, and distrusts what it kept from before."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import update

from flywheel.db.engine import Database, make_engine
from tests.support.postgres import PostgresServer
from tests.unit.db.test_hot_reads import BY_ID, meta, things

Replicas = tuple[Database, Database, str]


@pytest.fixture
def replicas(postgres: PostgresServer, tmp_path: Path) -> Iterator[Replicas]:
    url = postgres.create_database()
    # Two machines: each its own directory for what its processes share.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Database(make_engine(url), tmp_path / "a")
    b = Database(make_engine(url), tmp_path / "b")
    meta.create_all(a.engine)
    with a.write() as conn:
        conn.execute(things.insert().values(id=1, name="one"))
    yield a, b, url
    a.close()
    b.close()


def _listening(db: Database) -> None:
    db.hot.run(db.hot.prepare(BY_ID), {"id": 0})   # the first hot read starts the listener
    _eventually(lambda: db.changes.current() is not None)


def _eventually(check: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.01)


def _behind_its_back(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE things SET name = %s WHERE id = 1", (name,))


def test_a_write_on_one_replica_reaches_the_others_memory(replicas: Replicas,
                                                          tmp_path: Path) -> None:
    a, b, url = replicas
    _listening(b)
    query = b.hot.prepare(BY_ID)
    assert b.hot.run(query, {"id": 1}) == ("one",)
    _behind_its_back(url, "uno")
    assert b.hot.run(query, {"id": 1}) == ("one",)   # kept: nothing announced the change
    with a.write() as conn:
        conn.execute(update(things).where(things.c.id == 1).values(name="eins"))
    _eventually(lambda: b.hot.run(query, {"id": 1}) == ("eins",))
    assert (tmp_path / "b" / "db-changes").stat().st_size == 8   # this machine's generation


def test_nothing_is_kept_while_the_replica_cannot_hear(replicas: Replicas) -> None:
    _a, b, url = replicas
    _listening(b)
    query = b.hot.prepare(BY_ID)
    assert b.hot.run(query, {"id": 1}) == ("one",)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE query LIKE 'LISTEN %'")
    _eventually(lambda: b.changes.current() is None)
    # Changed while nobody listened: read from the database now, and not forgotten once
    # the listener is back.
    _behind_its_back(url, "uno")
    assert b.hot.run(query, {"id": 1}) == ("uno",)
    _eventually(lambda: b.changes.current() is not None)
    assert b.hot.run(query, {"id": 1}) == ("uno",)

"""Hot reads: one precompiled statement on a connection per thread, fresh data on every
read (no snapshot held open), and a broken connection replaced once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, insert, select

from flywheel.db.engine import Database, make_engine

meta = MetaData()
things = Table("things", meta, Column("id", Integer, primary_key=True),
               Column("name", String(20)))
BY_ID = select(things.c.name).where(things.c.id == bindparam("id"))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(make_engine(f"sqlite:///{tmp_path / 'hot.db'}"))
    meta.create_all(database.engine)
    with database.write() as conn:
        conn.execute(insert(things).values(id=1, name="one"))
    yield database
    database.close()


def test_a_prepared_read_sees_each_new_commit(db: Database) -> None:
    query = db.hot.prepare(BY_ID)
    assert db.hot.run(query, {"id": 1}) == ("one",)
    assert db.hot.run(query, {"id": 2}) is None
    with db.write() as conn:
        conn.execute(insert(things).values(id=2, name="two"))
    assert db.hot.run(query, {"id": 2}) == ("two",)


def test_each_thread_has_its_own_connection(db: Database) -> None:
    query = db.hot.prepare(BY_ID)
    db.hot.run(query, {"id": 1})
    connections = {id(db.hot._local.driver)}  # type: ignore[attr-defined]

    def other() -> None:
        db.hot.run(query, {"id": 1})
        connections.add(id(db.hot._local.driver))  # type: ignore[attr-defined]

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(connections) == 2


def test_a_broken_connection_is_replaced(db: Database) -> None:
    query = db.hot.prepare(BY_ID)
    db.hot.run(query, {"id": 1})
    db.hot._local.driver.close()  # type: ignore[attr-defined]  # the database went away
    assert db.hot.run(query, {"id": 1}) == ("one",)

"""Hot reads: one precompiled statement on a connection per thread, fresh data on every
read (no snapshot held open), a broken connection replaced once, and answers kept in memory
only while no write has committed since, in any process."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    insert,
    select,
    update,
)

from flywheel.db import changes
from flywheel.db.engine import Database, make_engine
from flywheel.db.hot import HotReads

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
        db.hot.run(query, {"id": 2})  # not asked yet: not in memory
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


def _behind_its_back(path: Path, sql: str) -> None:
    """A change that no write transaction of ours announces: whatever sees it read the
    database, not memory."""
    import sqlite3
    with sqlite3.connect(path) as conn:
        conn.execute(sql)


def _count_queries(hot: HotReads, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    asked: list[Any] = []
    real = hot._query

    def counting(query: Any, values: Any) -> Any:
        asked.append(dict(values))
        return real(query, values)

    monkeypatch.setattr(hot, "_query", counting)
    return asked


def test_an_answer_is_kept_until_a_write_commits(db: Database, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    query = db.hot.prepare(BY_ID)
    asked = _count_queries(db.hot, monkeypatch)
    assert db.hot.run(query, {"id": 1}) == ("one",)
    assert db.hot.run(query, {"id": 2}) is None   # absence is kept too
    _behind_its_back(tmp_path / "hot.db", "UPDATE things SET name = 'uno' WHERE id = 1")
    assert db.hot.run(query, {"id": 1}) == ("one",)
    assert db.hot.run(query, {"id": 2}) is None
    assert len(asked) == 2
    with db.write() as conn:   # any write, even to another row, makes every answer stale
        conn.execute(insert(things).values(id=3, name="three"))
    assert db.hot.run(query, {"id": 1}) == ("uno",)
    assert len(asked) == 3


def test_a_write_by_another_process_is_seen_at_once(db: Database, tmp_path: Path) -> None:
    query = db.hot.prepare(BY_ID)
    assert db.hot.run(query, {"id": 2}) is None
    subprocess.run([sys.executable, "-c", f"""
from sqlalchemy import insert
from flywheel.db import changes
from flywheel.db.engine import Database, make_engine
from tests.unit.db.test_hot_reads import things
db = Database(make_engine("sqlite:///{tmp_path / 'hot.db'}"))
with db.write() as conn:
    conn.execute(insert(things).values(id=2, name="two"))
"""], check=True, cwd=Path(__file__).parents[3])
    assert db.hot.run(query, {"id": 2}) == ("two",)


def test_a_rolled_back_write_still_makes_answers_stale(db: Database, tmp_path: Path) -> None:
    # A commit that fails may or may not have happened: what was read before is not trusted.
    query = db.hot.prepare(BY_ID)
    db.hot.run(query, {"id": 1})
    _behind_its_back(tmp_path / "hot.db", "UPDATE things SET name = 'uno' WHERE id = 1")
    with pytest.raises(RuntimeError), db.write():
        raise RuntimeError("failed mid-transaction")
    assert db.hot.run(query, {"id": 1}) == ("uno",)


def test_an_answer_read_across_a_commit_is_not_kept(db: Database,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The write commits while the read is under way: the read's answer may be older than
    the commit, so the next read asks again."""
    query = db.hot.prepare(BY_ID)
    real = db.hot._query
    raced = False

    def racing(q: Any, values: Any) -> Any:
        nonlocal raced
        row = real(q, values)   # the old name ...
        if not raced:
            raced = True        # ... and only then the rename commits
            with db.write() as conn:
                conn.execute(update(things).where(things.c.id == 1).values(name="uno"))
        return row

    monkeypatch.setattr(db.hot, "_query", racing)
    assert db.hot.run(query, {"id": 1}) == ("one",)
    assert db.hot.run(query, {"id": 1}) == ("uno",)


def test_memory_for_answers_is_bounded(tmp_path: Path) -> None:
    database = Database(make_engine(f"sqlite:///{tmp_path / 'bounded.db'}"))
    meta.create_all(database.engine)
    limit = 4096
    database.hot = hot = HotReads(database.engine, database.changes, memo_bytes=limit)
    with database.write() as conn:
        conn.execute(insert(things), [{"id": i, "name": "x" * 20} for i in range(200)])
    query = hot.prepare(BY_ID)
    for i in range(200):
        assert hot.run(query, {"id": i}) == ("x" * 20,)
        assert hot._memo_bytes <= limit
    assert 0 < len(hot._memo) < 200
    assert hot.run(query, {"id": 199}) == ("x" * 20,)   # the newest are the ones kept
    database.close()



def test_nothing_is_kept_where_the_generation_cannot_be_shared(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the shared file (it could not be created), other processes' writes would go
    unseen: every read asks the database."""
    monkeypatch.setattr(changes, "_open_map", lambda _path: None)
    database = Database(make_engine(f"sqlite:///{tmp_path / 'unshared.db'}"))
    meta.create_all(database.engine)
    with database.write() as conn:
        conn.execute(insert(things).values(id=1, name="one"))
    query = database.hot.prepare(BY_ID)
    assert database.hot.run(query, {"id": 1}) == ("one",)
    _behind_its_back(tmp_path / "unshared.db", "UPDATE things SET name = 'uno' WHERE id = 1")
    assert database.hot.run(query, {"id": 1}) == ("uno",)
    database.close()

"""Workspaces, their versions and their lock: every write is a new version, encrypted at
rest; the lock and the serial/lineage rules decide which writes are taken.

Each change is one write transaction that first reads the workspace row (``FOR UPDATE`` on
PostgreSQL; SQLite's write transactions are exclusive), so two writers or two lockers are
serialized and exactly one wins."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from flywheel.db.engine import Database, insert_ignore
from flywheel.errors import Conflict, Invalid, Locked, NotFound, TooLarge
from flywheel.state.crypto import StateCipher
from flywheel.state.document import Lineage, read_lineage
from flywheel.state.lockinfo import LockInfo
from flywheel.state.names import check_workspace_name
from flywheel.state.schema import versions, workspaces

Clock = Callable[[], float]


@dataclass(frozen=True)
class Version:
    version: int
    serial: int | None
    lineage: str | None
    created_by: str
    created_at: int
    size: int
    md5: str
    sha256: str
    note: str | None


@dataclass(frozen=True)
class Lock:
    id: str
    info: str
    locked_by: str
    locked_at: int


@dataclass(frozen=True)
class Workspace:
    name: str
    current: Version | None
    lock: Lock | None
    versions: int


@dataclass(frozen=True)
class Content:
    version: Version
    body: bytes


@dataclass(frozen=True)
class _Row:
    id: int
    name: str
    current_version: int | None
    last_version: int
    lock: Lock | None


_VERSION_COLUMNS = (versions.c.version, versions.c.serial, versions.c.lineage,
                    versions.c.created_by, versions.c.created_at, versions.c.size,
                    versions.c.md5, versions.c.sha256, versions.c.note)
_WORKSPACE_COLUMNS = (workspaces.c.id, workspaces.c.name, workspaces.c.current_version,
                      workspaces.c.last_version, workspaces.c.lock_id, workspaces.c.lock_info,
                      workspaces.c.locked_by, workspaces.c.locked_at)


def _version(row: Sequence[Any]) -> Version:
    return Version(*row)


def _workspace_row(row: Sequence[Any]) -> _Row:
    id_, name, current, last, lock_id, info, by, at = row
    lock = Lock(lock_id, info, by, at) if lock_id is not None else None
    return _Row(id_, name, current, last, lock)


class StateStore:
    def __init__(self, db: Database, cipher: StateCipher, *, retention: int, max_size: int,
                 clock: Clock = time.time) -> None:
        self.db = db
        self._cipher = cipher
        self.retention = retention
        self.max_size = max_size
        self._clock = clock

    # -- reading --

    def current(self, name: str) -> Content | None:
        """The workspace's state, or None when it has none."""
        with self.db.read() as conn:
            row = self._find(conn, name)
            if row is None or row.current_version is None:
                return None
            return self._content(conn, row, row.current_version)

    def show(self, name: str, version: int | None = None) -> Content:
        with self.db.read() as conn:
            row = self._existing(conn, name)
            number = row.current_version if version is None else version
            if number is None:
                raise NotFound(f"workspace {name!r} has no state")
            return self._content(conn, row, number)

    def workspace(self, name: str) -> Workspace:
        with self.db.read() as conn:
            return self._describe(conn, self._existing(conn, name))

    def workspaces(self) -> list[Workspace]:
        with self.db.read() as conn:
            rows = conn.execute(select(*_WORKSPACE_COLUMNS).order_by(workspaces.c.name)).all()
            return [self._describe(conn, _workspace_row(r)) for r in rows]

    def history(self, name: str, limit: int | None = None) -> list[Version]:
        """Newest first."""
        with self.db.read() as conn:
            row = self._existing(conn, name)
            query = (select(*_VERSION_COLUMNS).where(versions.c.workspace_id == row.id)
                     .order_by(versions.c.version.desc()).limit(limit))
            return [_version(r) for r in conn.execute(query).all()]

    # -- writing --

    def write(self, name: str, body: bytes, *, by: str, lock_id: str | None,
              force: bool = False, note: str | None = None) -> Version:
        """Store ``body`` as the workspace's new state. A lower serial or another lineage
        than the current state's is refused unless ``force``d."""
        check_workspace_name(name)
        if not body:
            raise Invalid("a state body is required")
        if len(body) > self.max_size:
            raise TooLarge(f"state larger than the server's limit of {self.max_size} bytes")
        lineage = read_lineage(body)
        with self.db.write() as conn:
            row = self._for_update(conn, name)
            _check_holder(row, lock_id)
            if not force and row.current_version is not None:
                _check_succession(conn, row, lineage)
            return self._add_version(conn, row, body, lineage, by, note)

    def rollback(self, name: str, to: int, *, by: str) -> Version:
        """A new version whose content is version ``to``'s."""
        with self.db.write() as conn:
            row = self._for_update(conn, name, create=False)
            _check_holder(row, None)
            old = self._content(conn, row, to)
            return self._add_version(conn, row, old.body, read_lineage(old.body), by,
                                     f"rollback to version {to}")

    def purge(self, name: str, *, lock_id: str | None) -> bool:
        """Drop the current state (its versions stay in the history, for a rollback);
        False if there was none."""
        with self.db.write() as conn:
            row = self._find(conn, name, for_update=True)
            if row is None:
                return False
            _check_holder(row, lock_id)
            conn.execute(update(workspaces).where(workspaces.c.id == row.id)
                         .values(current_version=None))
            return row.current_version is not None

    # -- locking --

    def lock(self, name: str, info: LockInfo, *, by: str) -> None:
        """Take the lock; taking it again with the same ID (a retried request) succeeds."""
        with self.db.write() as conn:
            row = self._for_update(conn, name)
            if row.lock is not None:
                if row.lock.id == info.id:
                    return
                raise _locked(name, row.lock)
            conn.execute(update(workspaces).where(workspaces.c.id == row.id).values(
                lock_id=info.id, lock_info=info.raw, locked_by=by,
                locked_at=int(self._clock())))

    def unlock(self, name: str, lock_id: str | None) -> Lock | None:
        """Release the lock if ``lock_id`` holds it, or whoever holds it when None (a
        force-unlock). Returns the lock released, None if there was none."""
        with self.db.write() as conn:
            row = self._find(conn, name, for_update=True)
            if row is None or row.lock is None:
                return None
            if lock_id is not None and lock_id != row.lock.id:
                raise _locked(name, row.lock)
            conn.execute(update(workspaces).where(workspaces.c.id == row.id).values(
                lock_id=None, lock_info=None, locked_by=None, locked_at=None))
            return row.lock

    # -- internals --

    def _find(self, conn: Connection, name: str, *, for_update: bool = False) -> _Row | None:
        query = select(*_WORKSPACE_COLUMNS).where(workspaces.c.name == name)
        row = conn.execute(query.with_for_update() if for_update else query).first()
        return _workspace_row(row) if row is not None else None

    def _existing(self, conn: Connection, name: str) -> _Row:
        row = self._find(conn, name)
        if row is None:
            raise NotFound(f"no workspace named {name[:128]!r}")
        return row

    def _for_update(self, conn: Connection, name: str, *, create: bool = True) -> _Row:
        if create:
            conn.execute(insert_ignore(conn, workspaces).values(
                name=check_workspace_name(name), last_version=0,
                created_at=int(self._clock())))
        row = self._find(conn, name, for_update=True)
        if row is None:
            raise NotFound(f"no workspace named {name[:128]!r}")
        return row

    def _content(self, conn: Connection, row: _Row, number: int) -> Content:
        found = conn.execute(select(*_VERSION_COLUMNS, versions.c.content).where(
            versions.c.workspace_id == row.id, versions.c.version == number)).first()
        if found is None:
            raise NotFound(f"workspace {row.name!r} has no version {number}")
        body = self._cipher.open(found[-1], row.name, number)
        return Content(_version(found[:-1]), body)

    def _describe(self, conn: Connection, row: _Row) -> Workspace:
        current = None
        if row.current_version is not None:
            found = conn.execute(select(*_VERSION_COLUMNS).where(
                versions.c.workspace_id == row.id,
                versions.c.version == row.current_version)).first()
            current = _version(found) if found is not None else None
        count = conn.execute(select(func.count()).where(
            versions.c.workspace_id == row.id)).scalar_one()
        return Workspace(row.name, current, row.lock, count)

    def _add_version(self, conn: Connection, row: _Row, body: bytes, lineage: Lineage,
                     by: str, note: str | None) -> Version:
        number = row.last_version + 1
        version = Version(number, lineage.serial, lineage.lineage, by[:255],
                          int(self._clock()), len(body), hashlib.md5(body).hexdigest(),
                          hashlib.sha256(body).hexdigest(), note)
        conn.execute(insert(versions).values(
            workspace_id=row.id, content=self._cipher.seal(body, row.name, number),
            **asdict(version)))
        conn.execute(update(workspaces).where(workspaces.c.id == row.id)
                     .values(last_version=number, current_version=number))
        # Numbers are consecutive, so the last N versions are those above number - N.
        conn.execute(delete(versions).where(versions.c.workspace_id == row.id,
                                            versions.c.version <= number - self.retention))
        return version


def _locked(name: str, lock: Lock) -> Locked:
    return Locked(f"workspace {name!r} is locked by {lock.locked_by!r} (lock ID {lock.id})",
                  lock.info)


def _check_holder(row: _Row, lock_id: str | None) -> None:
    """A change is taken from the lock's holder, or from anyone while it is free."""
    if row.lock is not None:
        if lock_id != row.lock.id:
            raise _locked(row.name, row.lock)
    elif lock_id is not None:
        raise Conflict(f"workspace {row.name!r} is not locked by {lock_id[:255]!r} (was the "
                       "lock force-unlocked?); take the lock again and retry")


def _check_succession(conn: Connection, row: _Row, new: Lineage) -> None:
    stored = conn.execute(select(versions.c.serial, versions.c.lineage).where(
        versions.c.workspace_id == row.id,
        versions.c.version == row.current_version)).first()
    if stored is None:
        return
    serial, lineage = stored
    if lineage is not None and new.lineage is not None and new.lineage != lineage:
        raise Conflict(f"refused: the state's lineage {new.lineage!r} is not the lineage of "
                       f"workspace {row.name!r}'s current state; a different state would "
                       "replace it (force it with ?force=true and the admin permission)")
    if serial is not None and new.serial is not None and new.serial < serial:
        raise Conflict(f"refused: serial {new.serial} is lower than the serial of workspace "
                       f"{row.name!r}'s current state; pull the state first (or force it "
                       "with ?force=true and the admin permission)")

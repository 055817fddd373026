"""Changes to the fleet spec made from the operator plane: proposed as a pull (merge)
request on the forge (GitOps), or written to the local spec and applied to the cluster
(direct). Each is recorded, and a proposed one is followed on the forge afterwards."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import insert, select

from flywheel.client.files import atomic_write, existing_mode
from flywheel.db.engine import Database
from flywheel.errors import Conflict, FailedPrecondition, NotFound
from flywheel.operator.forges.base import ChangeState, Forge
from flywheel.operator.pool_edits import Edited
from flywheel.operator.schema import changes
from flywheel.operator.spec_source import LocalSpec, SpecText

MAX_LISTED = 200


@dataclass(frozen=True)
class Change:
    id: int
    kind: str            # pause, resume, edit
    pool: str
    forge: str           # github, gitlab, or "direct"
    number: int | None
    url: str | None
    branch: str | None
    title: str
    diff: str
    author: str
    created_at: int


def _body(change_title: str, diff: str, author: str) -> str:
    return (f"{change_title}, proposed by {author} from the Flywheel operator plane.\n\n"
            f"```diff\n{diff}```\n")


class ChangeLog:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    def record(self, *, kind: str, pool: str, forge: str, number: int | None, url: str | None,
               branch: str | None, title: str, diff: str, author: str) -> Change:
        now = int(self._clock())
        with self._db.write() as conn:
            new_id = conn.execute(insert(changes).values(
                kind=kind, pool=pool, forge=forge, number=number, url=url, branch=branch,
                title=title, diff=diff, author=author, created_at=now)).inserted_primary_key
        assert new_id is not None
        return Change(int(new_id[0]), kind, pool, forge, number, url, branch, title, diff,
                      author, now)

    def list(self) -> list[Change]:
        with self._db.read() as conn:
            rows = conn.execute(select(changes).order_by(changes.c.id.desc())
                                .limit(MAX_LISTED))
            return [Change(**dict(r._mapping)) for r in rows]

    def get(self, change_id: int) -> Change:
        with self._db.read() as conn:
            row = conn.execute(select(changes).where(changes.c.id == change_id)).first()
        if row is None:
            raise NotFound(f"no change {change_id}")
        return Change(**dict(row._mapping))


def propose(forge: Forge, spec: SpecText, edited: Edited, *, base: str, kind: str, pool: str,
            title: str, author: str, log: ChangeLog) -> Change:
    branch = f"flywheel/{kind}-{pool}-{secrets.token_hex(3)}"
    request = forge.propose(path=str(spec.path), base=base, branch=branch, text=edited.text,
                            version=spec.version, title=title,
                            body=_body(title, edited.diff, author))
    return log.record(kind=kind, pool=pool, forge=forge.kind, number=request.number,
                      url=request.url, branch=branch, title=title, diff=edited.diff,
                      author=author)


def write_local(source: LocalSpec, spec: SpecText, edited: Edited) -> None:
    """Write the edited spec, unless the file changed since it was read."""
    current = source.read()
    if current.version != spec.version:
        raise Conflict(f"{source.path} changed while the edit was made; look again")
    atomic_write(Path(source.path), edited.text, existing_mode(Path(source.path), 0o644))


def follow(forge: Forge | None, change: Change) -> ChangeState:
    if forge is None or change.number is None:
        raise FailedPrecondition("this change was applied directly; there is nothing to follow")
    if forge.kind != change.forge:
        raise FailedPrecondition(f"this change was opened on {change.forge}, and the forge "
                                 f"configured now is {forge.kind}")
    return forge.state(change.number)

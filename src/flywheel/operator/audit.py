"""The audit log: who did what, when, from where, for every state-changing action on every
plane, including the ones refused."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select

from flywheel.auth.principal import Principal
from flywheel.db.engine import Database
from flywheel.operator.schema import audit_events

MAX_PAGE = 500


@dataclass(frozen=True)
class AuditEvent:
    id: int
    at: int            # milliseconds since the epoch
    actor: str
    via: str
    role: str | None
    action: str        # e.g. token.mint, fleet.pause, session.begin
    target: str
    detail: dict[str, Any]
    address: str
    outcome: str       # ok, refused, failed


class AuditLog:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    def record(self, principal: Principal, action: str, target: str, *, address: str | None,
               outcome: str = "ok", detail: dict[str, Any] | None = None) -> None:
        with self._db.write() as conn:
            conn.execute(insert(audit_events).values(
                at=int(self._clock() * 1000), actor=(principal.subject or "anonymous")[:512],
                via=principal.via[:32],
                role=principal.role.name.lower() if principal.role else None,
                action=action[:64], target=target[:512],
                detail=json.dumps(detail or {}, sort_keys=True, default=str)[:8192],
                address=(address or "unknown")[:64], outcome=outcome[:16]))

    def events(self, *, limit: int = 100, before: int | None = None,
               actor: str | None = None, action: str | None = None) -> list[AuditEvent]:
        """Newest first; ``before`` is an event id, for the next page."""
        q = select(audit_events).order_by(audit_events.c.id.desc()).limit(
            max(1, min(limit, MAX_PAGE)))
        if before is not None:
            q = q.where(audit_events.c.id < before)
        if actor:
            q = q.where(audit_events.c.actor == actor)
        if action:
            q = q.where(audit_events.c.action.startswith(action, autoescape=True))
        with self._db.read() as conn:
            return [AuditEvent(r.id, r.at, r.actor, r.via, r.role, r.action, r.target,
                               json.loads(r.detail), r.address, r.outcome)
                    for r in conn.execute(q)]

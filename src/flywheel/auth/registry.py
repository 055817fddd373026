"""Which tokens were minted and which are revoked; consulted on every authenticated request."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, case, exists, insert, select, update

from flywheel.auth.tokens import Clock, TokenClaims
from flywheel.db.engine import Database
from flywheel.db.schema import subject_revocations, tokens

# A token recorded here is revoked exactly when its own row says so; a revocation by subject
# marks every recorded token of the subject at that moment, so one minted a moment later
# stays good. A token this server never recorded (minted elsewhere with the same secret)
# has only its whole-second ``iat`` to go by: it is refused if issued in or before the
# second of a revocation of its subject, erring towards refusal.
_REVOKED = select(case(
    (exists().where(tokens.c.jti == bindparam("jti")),
     exists().where(tokens.c.jti == bindparam("jti"), tokens.c.revoked_at.is_not(None))),
    else_=exists().where(subject_revocations.c.sub == bindparam("sub"),
                         subject_revocations.c.revoked_at >= bindparam("iat"))))


@dataclass(frozen=True)
class RecordedToken:
    """A token minted here, as admins see it: never the token itself."""

    id: str
    sub: str
    issued_at: int
    expires_at: int | None
    revoked_at: int | None
    permissions: dict[str, Any]


class TokenRegistry:
    def __init__(self, db: Database, clock: Clock = time.time) -> None:
        self._db = db
        self._clock = clock
        self._revoked_query = db.hot.prepare(_REVOKED)

    def record(self, claims: TokenClaims) -> None:
        with self._db.write() as conn:
            conn.execute(insert(tokens).values(
                jti=claims.jti, sub=claims.sub, issued_at=claims.issued_at,
                expires_at=claims.expires_at,
                permissions=json.dumps(claims.grants.to_claims(), sort_keys=True)))

    def revoke(self, *, jti: str | None = None, sub: str | None = None) -> int:
        """Revoke one token by id, or every token of a subject issued until now.

        Returns how many recorded tokens it matched (a subject revocation also voids
        tokens this server never recorded, so it always takes effect)."""
        now = int(self._clock())
        with self._db.write() as conn:
            if jti is not None:
                return conn.execute(update(tokens).where(tokens.c.jti == jti,
                                                         tokens.c.revoked_at.is_(None))
                                    .values(revoked_at=now)).rowcount or int(
                    conn.execute(select(exists().where(tokens.c.jti == jti))).scalar_one())
            if sub is None:
                raise ValueError("revoke needs a token id or a subject")
            conn.execute(subject_revocations.delete().where(subject_revocations.c.sub == sub))
            conn.execute(insert(subject_revocations).values(sub=sub, revoked_at=now))
            return conn.execute(update(tokens).where(tokens.c.sub == sub,
                                                     tokens.c.revoked_at.is_(None))
                                .values(revoked_at=now)).rowcount

    def is_revoked(self, claims: TokenClaims) -> bool:
        row = self._db.hot.run(self._revoked_query, {"jti": claims.jti or "", "sub": claims.sub,
                                                    "iat": claims.issued_at})
        return bool(row and row[0])

    def list(self, sub: str | None = None) -> list[RecordedToken]:
        q = select(tokens.c.jti, tokens.c.sub, tokens.c.issued_at, tokens.c.expires_at,
                   tokens.c.revoked_at, tokens.c.permissions).order_by(tokens.c.issued_at)
        if sub is not None:
            q = q.where(tokens.c.sub == sub)
        with self._db.read() as conn:
            return [RecordedToken(jti, sub_, issued, expires, revoked, json.loads(grants))
                    for jti, sub_, issued, expires, revoked, grants in conn.execute(q)]

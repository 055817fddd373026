"""Which tokens were minted and which are revoked; consulted on every authenticated request."""

from __future__ import annotations

import json
import time

from sqlalchemy import Engine, bindparam, delete, insert, select, update

from flywheel.auth.tokens import TokenClaims
from flywheel.db.hot import HotReads
from flywheel.db.schema import subject_revocations, tokens

_REVOKED = (
    select(tokens.c.jti)
    .where(tokens.c.jti == bindparam("jti"), tokens.c.revoked_at.is_not(None))
    .union_all(select(subject_revocations.c.sub)
               .where(subject_revocations.c.sub == bindparam("sub"),
                      subject_revocations.c.revoked_at >= bindparam("iat")))
    .limit(1)
)


class TokenRegistry:
    def __init__(self, engine: Engine, reads: HotReads) -> None:
        self._engine = engine
        self._reads = reads
        self._revoked_query = reads.prepare(_REVOKED)

    def record(self, claims: TokenClaims) -> None:
        with self._engine.begin() as conn:
            conn.execute(insert(tokens).values(
                jti=claims.jti, sub=claims.sub, issued_at=claims.issued_at,
                expires_at=claims.expires_at,
                permissions=json.dumps(claims.grants.to_claims(), sort_keys=True)))

    def revoke(self, *, jti: str | None = None, sub: str | None = None) -> int:
        """Revoke one token by id, or every token of a subject issued until now.

        Returns how many recorded tokens it matched (a subject revocation also voids
        tokens this server never recorded, so it always takes effect)."""
        now = int(time.time())
        with self._engine.begin() as conn:
            if jti is not None:
                return conn.execute(update(tokens).where(tokens.c.jti == jti)
                                    .values(revoked_at=now)).rowcount
            if sub is None:
                raise ValueError("revoke needs a token id or a subject")
            conn.execute(delete(subject_revocations).where(subject_revocations.c.sub == sub))
            conn.execute(insert(subject_revocations).values(sub=sub, revoked_at=now))
            return conn.execute(update(tokens).where(tokens.c.sub == sub,
                                                     tokens.c.revoked_at.is_(None))
                                .values(revoked_at=now)).rowcount

    def is_revoked(self, claims: TokenClaims) -> bool:
        return self._reads.run(self._revoked_query, {"jti": claims.jti or "", "sub": claims.sub,
                                                     "iat": claims.issued_at}) is not None

    def list(self, sub: str | None = None) -> list[dict[str, object]]:
        q = select(tokens).order_by(tokens.c.issued_at)
        if sub is not None:
            q = q.where(tokens.c.sub == sub)
        with self._engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

"""Browser sessions: a signed cookie naming a session row, which expires and can be revoked
from any replica; and the CSRF token each session's state-changing requests must carry."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import insert, select, update

from flywheel.auth.identities import Identity
from flywheel.auth.tokens import Clock
from flywheel.db.engine import Database
from flywheel.operator.schema import sessions

COOKIE = "flywheel_session"
# A session's last use is written at most this often, not on every request.
_TOUCH_SECONDS = 60


def session_key(token_secret: str) -> bytes:
    """The sessions' signing key, derived from the token secret every replica shares."""
    return hmac.new(token_secret.encode(), b"flywheel-sessions", hashlib.sha256).digest()


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    id_hash: str
    identity: Identity
    source: str          # how the person was identified when it began: tailnet, cert, passkey
    created_at: int
    expires_at: int
    last_seen_at: int
    address: str
    user_agent: str


class SessionStore:
    def __init__(self, db: Database, secret: bytes, lifetime: int,
                 clock: Clock = time.time) -> None:
        self._db = db
        self._serializer = URLSafeTimedSerializer(
            secret, salt="flywheel-session", signer_kwargs={"digest_method": hashlib.sha256})
        self._csrf_key = hmac.new(secret, b"flywheel-csrf", hashlib.sha256).digest()
        self.lifetime = lifetime
        self._clock = clock

    def create(self, identity: Identity, source: str, address: str,
               user_agent: str) -> tuple[str, Session]:
        """A new session; returns the cookie value and the session."""
        session_id = secrets.token_urlsafe(32)
        now = int(self._clock())
        session = Session(_hash(session_id), identity, source, now, now + self.lifetime, now,
                          address[:64], user_agent[:255])
        with self._db.write() as conn:
            conn.execute(insert(sessions).values(
                id_hash=session.id_hash, identity=identity.key, display=identity.display[:255],
                source=source, created_at=now, expires_at=session.expires_at,
                last_seen_at=now, address=session.address, user_agent=session.user_agent))
        return str(self._serializer.dumps(session_id)), session

    def find(self, cookie: str) -> Session | None:
        """The live session a cookie names; None for a forged, expired or revoked one."""
        try:
            session_id = self._serializer.loads(cookie, max_age=self.lifetime)
        except BadSignature:
            return None
        if not isinstance(session_id, str):
            return None
        now = int(self._clock())
        with self._db.read() as conn:
            row = conn.execute(select(sessions).where(
                sessions.c.id_hash == _hash(session_id), sessions.c.revoked_at.is_(None),
                sessions.c.expires_at > now)).first()
        if row is None:
            return None
        found = _session(row._mapping)
        if now - found.last_seen_at >= _TOUCH_SECONDS:
            with self._db.write() as conn:
                conn.execute(update(sessions).where(sessions.c.id_hash == found.id_hash)
                             .values(last_seen_at=now))
        return found

    def list(self, identity: Identity) -> list[Session]:
        now = int(self._clock())
        with self._db.read() as conn:
            rows = conn.execute(select(sessions).where(
                sessions.c.identity == identity.key, sessions.c.revoked_at.is_(None),
                sessions.c.expires_at > now).order_by(sessions.c.created_at.desc()))
            return [_session(r._mapping) for r in rows]

    def revoke(self, identity: Identity, id_hash: str) -> bool:
        """End one of this identity's sessions; False if it has no such live session."""
        with self._db.write() as conn:
            return bool(conn.execute(update(sessions).where(
                sessions.c.id_hash == id_hash, sessions.c.identity == identity.key,
                sessions.c.revoked_at.is_(None)).values(revoked_at=int(self._clock())))
                .rowcount)

    def csrf_token(self, session: Session) -> str:
        return hmac.new(self._csrf_key, session.id_hash.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, session: Session, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(self.csrf_token(session), token)


def _session(row: object) -> Session:
    r = dict(row)  # type: ignore[call-overload]
    return Session(r["id_hash"], Identity.parse(r["identity"], r["display"]), r["source"],
                   r["created_at"], r["expires_at"], r["last_seen_at"], r["address"],
                   r["user_agent"])

"""JWTs in Attic's claim format, signed with the server's HS256 secret."""

from __future__ import annotations

import base64
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from flywheel.auth.permissions import Grants
from flywheel.errors import Unauthenticated

ALGORITHM = "HS256"
_DURATION = re.compile(r"(\d{1,12})([smhdwy])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
# Far enough for any real use, near enough that every date stays representable.
MAX_VALIDITY_SECONDS = 100 * 365 * 86400

Clock = Callable[[], float]


class TokenError(Unauthenticated):
    """The presented token is not acceptable; the message is safe to show the client."""


def parse_duration(text: str) -> int:
    """``30d``, ``12h``, ``1y2d`` → seconds, at most a hundred years."""
    pos, total = 0, 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(text) or total <= 0:
        raise ValueError(f"not a duration: {text[:40]!r} (use e.g. 30d, 12h, 1y)")
    if total > MAX_VALIDITY_SECONDS:
        raise ValueError("a duration may be at most 100y")
    return total


def new_secret() -> str:
    return base64.b64encode(secrets.token_bytes(64)).decode()


@dataclass(frozen=True)
class TokenClaims:
    sub: str
    jti: str | None
    issued_at: int
    expires_at: int | None
    not_before: int | None
    grants: Grants


# Tokens are minted and checked by the same deployment, so clocks agree; an expired token
# must stop working when it says it does.
_DECODED_CACHE_SIZE = 4096


def _int_claim(payload: dict[str, Any], name: str) -> int | None:
    """NumericDate claims as integers only: a float or a string is refused rather than
    read loosely (a lenient reading once left a token without expiry)."""
    value = payload.get(name)
    if value is None:
        return None
    if type(value) is not int:
        raise TokenError(f"invalid token: claim {name!r} must be an integer")
    return value


class TokenSigner:
    def __init__(self, secret_b64: str, clock: Clock = time.time) -> None:
        self._key = base64.b64decode(secret_b64)
        self._clock = clock
        # Verifying a JWT costs more than the lookup it guards; a token that verified once
        # verifies again, so only its time window is re-checked. Revocation is checked by
        # the caller on every request regardless.
        self._verified: dict[str, TokenClaims] = {}

    def mint(self, sub: str, grants: Grants,
             validity_seconds: int | None) -> tuple[str, TokenClaims]:
        if not sub or len(sub) > 255:
            raise ValueError("subject must be 1 to 255 characters")
        if validity_seconds is not None and not 0 < validity_seconds <= MAX_VALIDITY_SECONDS:
            raise ValueError("validity must be between 1 second and 100 years")
        now = int(self._clock())
        jti = uuid.uuid4().hex
        payload: dict[str, Any] = {"sub": sub, "jti": jti, "iat": now, "nbf": now,
                                   **grants.to_claims()}
        expires = now + validity_seconds if validity_seconds else None
        if expires is not None:
            payload["exp"] = expires
        token = jwt.encode(payload, self._key, algorithm=ALGORITHM)
        return token, TokenClaims(sub, jti, now, expires, now, grants)

    def decode(self, token: str) -> TokenClaims:
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify(token)
            if len(self._verified) >= _DECODED_CACHE_SIZE:
                self._verified.clear()
            self._verified[token] = claims
        now = self._clock()
        if claims.expires_at is not None and now >= claims.expires_at:
            raise TokenError("token has expired")
        if claims.not_before is not None and now < claims.not_before:
            raise TokenError("token is not valid yet")
        return claims

    def _verify(self, token: str) -> TokenClaims:
        try:
            # Time claims are checked by ``decode`` against our clock, every time.
            payload = jwt.decode(token, self._key, algorithms=[ALGORITHM],
                                 options={"require": ["sub"], "verify_exp": False,
                                          "verify_nbf": False, "verify_iat": False})
        except jwt.InvalidTokenError:
            raise TokenError("invalid token") from None
        try:
            grants = Grants.from_claims(payload)
        except ValueError as e:
            raise TokenError(f"invalid token: {e}") from None
        sub, jti = payload.get("sub"), payload.get("jti")
        if not isinstance(sub, str) or not sub or (jti is not None and not isinstance(jti, str)):
            raise TokenError("invalid token: malformed sub or jti claim")
        iat = _int_claim(payload, "iat")
        return TokenClaims(sub, jti, iat if iat is not None else 0,
                           _int_claim(payload, "exp"), _int_claim(payload, "nbf"), grants)

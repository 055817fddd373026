"""JWTs in Attic's claim format, signed with the server's HS256 secret."""

from __future__ import annotations

import base64
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from flywheel.auth.permissions import Grants

ALGORITHM = "HS256"
_DURATION = re.compile(r"(\d+)([smhdwy])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


class TokenError(Exception):
    """The presented token is not acceptable; the message is safe to show the client."""


def parse_duration(text: str) -> int:
    """``30d``, ``12h``, ``1y2d`` → seconds."""
    pos, total = 0, 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(text) or total <= 0:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30d, 12h, 1y)")
    return total


def new_secret() -> str:
    return base64.b64encode(secrets.token_bytes(64)).decode()


@dataclass(frozen=True)
class TokenClaims:
    sub: str
    jti: str | None
    issued_at: int
    expires_at: int | None
    grants: Grants


# Tokens are minted and checked by the same deployment, so clocks agree; an expired token
# must stop working when it says it does.
_LEEWAY = 0
_DECODED_CACHE_SIZE = 4096


class TokenSigner:
    def __init__(self, secret_b64: str) -> None:
        self._key = base64.b64decode(secret_b64)
        # Verifying a JWT costs more than the lookup it guards; a token that verified once
        # verifies again, so only its time window is re-checked. Revocation is checked by
        # the caller on every request regardless.
        self._verified: dict[str, tuple[TokenClaims, int | None]] = {}

    def mint(self, sub: str, grants: Grants, validity_seconds: int | None,
             now: int | None = None) -> tuple[str, TokenClaims]:
        if not sub or len(sub) > 255:
            raise ValueError("subject must be 1 to 255 characters")
        now = int(time.time()) if now is None else now
        jti = uuid.uuid4().hex
        payload: dict[str, Any] = {"sub": sub, "jti": jti, "iat": now, "nbf": now,
                                   **grants.to_claims()}
        expires = now + validity_seconds if validity_seconds else None
        if expires is not None:
            payload["exp"] = expires
        token = jwt.encode(payload, self._key, algorithm=ALGORITHM)
        return token, TokenClaims(sub, jti, now, expires, grants)

    def decode(self, token: str) -> TokenClaims:
        hit = self._verified.get(token)
        if hit is not None:
            claims, nbf = hit
            now = time.time()
            if claims.expires_at is not None and now > claims.expires_at + _LEEWAY:
                del self._verified[token]
                raise TokenError("token has expired")
            if nbf is None or now >= nbf - _LEEWAY:
                return claims
        claims, nbf = self._verify(token)
        if len(self._verified) >= _DECODED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (claims, nbf)
        return claims

    def _verify(self, token: str) -> tuple[TokenClaims, int | None]:
        try:
            payload = jwt.decode(token, self._key, algorithms=[ALGORITHM],
                                 options={"require": ["sub"]}, leeway=_LEEWAY)
        except jwt.ExpiredSignatureError:
            raise TokenError("token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("token is not valid yet") from None
        except jwt.InvalidTokenError:
            raise TokenError("invalid token") from None
        try:
            grants = Grants.from_claims(payload)
        except ValueError as e:
            raise TokenError(str(e)) from None
        sub, jti, iat, exp, nbf = (payload.get(k) for k in ("sub", "jti", "iat", "exp", "nbf"))
        if not isinstance(sub, str) or (jti is not None and not isinstance(jti, str)):
            raise TokenError("invalid token claims")
        claims = TokenClaims(sub, jti, iat if isinstance(iat, int) else 0,
                             exp if isinstance(exp, int) else None, grants)
        return claims, nbf if isinstance(nbf, int) else None

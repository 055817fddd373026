"""Who is calling and whether they may: applied on every request, revocation included."""

from __future__ import annotations

import base64
import binascii

from flywheel.auth.registry import TokenRegistry
from flywheel.auth.tokens import TokenClaims, TokenError, TokenSigner

PERMISSION_NAMES = {"r": "pull from", "w": "push to", "d": "delete from",
                    "cc": "create", "cr": "configure", "cq": "read the configuration of",
                    "cd": "destroy"}


class AccessDenied(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def token_from_authorization(value: str | None) -> str | None:
    """The token from ``Bearer T`` or Basic auth with T as the password (netrc's way)."""
    if not value:
        return None
    scheme, _, rest = value.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer" and rest.strip():
        return rest.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(rest.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise AccessDenied(401, "malformed Basic authorization header") from None
        _user, sep, password = decoded.partition(":")
        if sep and password:
            return password
        raise AccessDenied(401, "Basic authorization needs the token as its password")
    raise AccessDenied(401, "unsupported authorization scheme (use Bearer or Basic)")


class Authenticator:
    def __init__(self, signer: TokenSigner, registry: TokenRegistry) -> None:
        self._signer = signer
        self._registry = registry

    def caller(self, authorization: str | None) -> TokenClaims | None:
        token = token_from_authorization(authorization)
        if token is None:
            return None
        try:
            claims = self._signer.decode(token)
        except TokenError as e:
            raise AccessDenied(401, str(e)) from None
        if self._registry.is_revoked(claims):
            raise AccessDenied(401, "token has been revoked")
        return claims


def authorize(claims: TokenClaims | None, cache: str, cache_public: bool | None,
              needed: str) -> None:
    """Allow or raise. ``cache_public`` is None for a cache that does not exist, which
    callers without rights on that name cannot tell apart from one they may not see."""
    if needed == "r" and cache_public:
        return
    if claims is None:
        raise AccessDenied(401, f"authentication required to {PERMISSION_NAMES[needed]} "
                                f"cache {cache!r}")
    if not getattr(claims.grants.for_cache(cache), needed):
        raise AccessDenied(403, f"token for {claims.sub!r} may not {PERMISSION_NAMES[needed]} "
                                f"cache {cache!r}")

"""Turning what a request carries into a principal, revocation included."""

from __future__ import annotations

import base64
import binascii

from flywheel.auth.principal import ANONYMOUS, Principal, Role
from flywheel.auth.registry import TokenRegistry
from flywheel.auth.tokens import TokenError, TokenSigner
from flywheel.errors import Unauthenticated


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
            raise Unauthenticated("malformed Basic authorization header") from None
        _user, sep, password = decoded.partition(":")
        if sep and password:
            return password
        raise Unauthenticated("Basic authorization needs the token as its password")
    raise Unauthenticated("unsupported authorization scheme (use Bearer or Basic)")


class Authenticator:
    def __init__(self, signer: TokenSigner, registry: TokenRegistry) -> None:
        self._signer = signer
        self._registry = registry

    def from_authorization(self, authorization: str | None) -> Principal:
        token = token_from_authorization(authorization)
        if token is None:
            return ANONYMOUS
        claims = self._signer.decode(token)
        if self._registry.is_revoked(claims):
            raise TokenError("token has been revoked")
        return Principal(subject=claims.sub, via="token", grants=claims.grants,
                         role=Role.ADMIN if claims.grants.admin else None,
                         token_id=claims.jti)

"""Turning what a request carries into a principal, revocation included: a token, or (on
the operator plane's routes) a trusted proxy's identity, a client certificate, a session."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field

from flywheel.auth import identities
from flywheel.auth.identities import Identity, TrustedProxies
from flywheel.auth.principal import ANONYMOUS, Principal, Role
from flywheel.auth.registry import TokenRegistry
from flywheel.auth.roles import RoleMap, Roles
from flywheel.auth.sessions import Session, SessionStore
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


@dataclass(frozen=True)
class RequestFacts:
    """What identifies a request beyond its Authorization header. ``certificate`` is the
    subject of a client certificate this server verified itself (--client-ca)."""

    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    address: str | None = None
    cookie: str | None = None
    certificate: str | None = None


class Authenticator:
    def __init__(self, signer: TokenSigner, registry: TokenRegistry,
                 roles: Roles | None = None, proxies: TrustedProxies | None = None,
                 sessions: SessionStore | None = None) -> None:
        self._signer = signer
        self._registry = registry
        self.roles = roles or Roles(RoleMap())
        self._proxies = proxies or TrustedProxies(())
        self.sessions = sessions

    def from_authorization(self, authorization: str | None) -> Principal:
        token = token_from_authorization(authorization)
        if token is None:
            return ANONYMOUS
        claims = self._signer.decode(token)
        if self._registry.is_revoked(claims):
            raise TokenError("token has been revoked")
        identity = Identity("token", claims.sub, claims.sub)
        return Principal(subject=claims.sub, via="token", grants=claims.grants,
                         role=Role.ADMIN if claims.grants.admin else
                         self.roles.role_for(identity),
                         token_id=claims.jti, identity=identity)

    def identity_of(self, facts: RequestFacts) -> Identity | None:
        """Who a proxy or a client certificate says the caller is; headers from an address
        that may not assert identities are ignored (and logged)."""
        if facts.certificate is not None:
            return identities.certificate(facts.certificate)
        if not self._proxies.trusts(facts.address):
            identities.spoofed(facts.headers, facts.address)
            return None
        return identities.from_proxy(facts.headers)

    def session_of(self, facts: RequestFacts) -> Session | None:
        if self.sessions is None or not facts.cookie:
            return None
        return self.sessions.find(facts.cookie)

    def from_request(self, authorization: str | None, facts: RequestFacts) -> Principal:
        """A token wins; then what a proxy or certificate asserts now (with the session
        begun for that same identity); then a session alone."""
        if authorization:
            return self.from_authorization(authorization)
        identity = self.identity_of(facts)
        session = self.session_of(facts)
        if identity is not None:
            same = session is not None and session.identity.key == identity.key
            return self.principal_for(identity, identity.kind,
                                      session.id_hash if same and session else None)
        if session is not None:
            return self.principal_for(session.identity, "session", session.id_hash)
        return ANONYMOUS

    def principal_for(self, identity: Identity, via: str, session: str | None) -> Principal:
        return Principal(subject=identity.key, via=via, role=self.roles.role_for(identity),
                         identity=identity, session=session)

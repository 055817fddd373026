"""Who is calling: a principal, however it was identified, with what it is granted."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from flywheel.auth.identities import Identity
from flywheel.auth.permissions import Grants


class Role(IntEnum):
    """Server-wide roles, each including the ones below it."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3


@dataclass(frozen=True)
class Principal:
    subject: str | None
    # How the caller was identified: "anonymous", "token", and the identities the operator
    # plane adds (sessions, trusted-proxy identities, client certificates, passkeys).
    via: str
    grants: Grants = field(default_factory=Grants)
    role: Role | None = None
    token_id: str | None = None
    # Who, for roles and the audit log: the token's subject as ``token:SUB``, a tailnet
    # login, a certificate subject; a signed-in session keeps the identity it began with.
    identity: Identity | None = None
    session: str | None = None  # the session's id hash, when a session cookie identified it

    @property
    def ambient(self) -> bool:
        """Identified by what a browser sends by itself (a cookie, a proxy's headers, a
        client certificate): its state-changing requests must prove they come from our
        pages (CSRF)."""
        return not self.anonymous and self.via != "token"

    @property
    def anonymous(self) -> bool:
        return self.subject is None

    def describe(self) -> str:
        return "an anonymous caller" if self.subject is None else repr(self.subject)


ANONYMOUS = Principal(subject=None, via="anonymous")

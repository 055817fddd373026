"""What every operator-plane route (pages and JSON) shares: who is calling, judged from a
token, a trusted proxy's identity, a client certificate or a session; the one authorization
call for the route's declared resource and action; CSRF for callers a browser identifies by
itself; the audit record of every state-changing request, refused ones included; and the
security headers of every answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from flywheel.app.services import Services
from flywheel.auth.authenticate import RequestFacts
from flywheel.auth.authorize import (
    ACCOUNT,
    AUDIT,
    FLEET,
    SERVER,
    TOKENS,
    ServerResource,
    authorize,
)
from flywheel.auth.principal import Principal
from flywheel.auth.sessions import COOKIE, Session
from flywheel.errors import Forbidden, Unauthenticated
from flywheel.server.access import Access, Endpoint
from flywheel.server.blocking import Offload

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
# Resources of the operator plane's routes, by the name their Endpoint declares.
RESOURCES: dict[str, ServerResource] = {"server": SERVER, "fleet": FLEET, "tokens": TOKENS,
                                        "audit": AUDIT, "account": ACCOUNT}
# Scripts and styles only from our own files, nothing inline, no frames, forms only to us.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff",
                    "referrer-policy": "same-origin", "x-frame-options": "DENY",
                    "cache-control": "no-store"}


@dataclass(frozen=True)
class Caller:
    principal: Principal
    address: str
    session: Session | None


def facts(request: Request) -> RequestFacts:
    # The subject of a client certificate this server verified itself arrives from the TLS
    # front in the ASGI scope; nothing a client sends can put it there.
    certificate = request.scope.get("flywheel.client_certificate")
    return RequestFacts(headers={k.lower(): v for k, v in request.headers.items()},
                        address=request.client.host if request.client else None,
                        cookie=request.cookies.get(COOKIE),
                        certificate=certificate if isinstance(certificate, str) else None)


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def protect(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class OperatorAccess:
    def __init__(self, services: Services, access: Access, offload: Offload) -> None:
        self.services = services
        self.access = access   # per-cache decisions, as the cache routes make them
        self.offload = offload

    async def caller(self, request: Request) -> Caller:
        found = facts(request)
        auth = self.services.auth
        principal = await self.offload.run(
            auth.from_request, request.headers.get("authorization"), found)
        session = None
        if principal.session is not None:
            session = await self.offload.run(auth.session_of, found)
        return Caller(principal, found.address or "unknown", session)

    def authorize(self, caller: Caller, endpoint: Endpoint) -> None:
        if endpoint.resource == "none" or endpoint.action is None:
            return
        if endpoint.resource == "cache":
            return   # judged per cache by the handler, which knows the cache
        authorize(caller.principal, RESOURCES[endpoint.resource], endpoint.action)

    def check_csrf(self, request: Request, caller: Caller, submitted: str | None) -> None:
        """A state-changing request from a browser-identified caller must carry its
        session's CSRF token (a form field, or the X-CSRF-Token header from our script)."""
        if request.method in SAFE_METHODS or not caller.principal.ambient:
            return
        if caller.session is None:
            raise Forbidden("no session: open a page first, then submit the form from it")
        token = submitted or request.headers.get(CSRF_HEADER)
        if not self.services.auth.sessions or not self.services.auth.sessions.check_csrf(
                caller.session, token):
            raise Forbidden("the form's CSRF token is missing or wrong; reload the page")

    def csrf_token(self, caller: Caller) -> str | None:
        sessions = self.services.auth.sessions
        return sessions.csrf_token(caller.session) if sessions and caller.session else None

    async def audit(self, caller: Caller, action: str, target: str, *, outcome: str = "ok",
                    detail: dict[str, Any] | None = None) -> None:
        await self.offload.run(lambda: self.services.operator.audit.record(
            caller.principal, action, target, address=caller.address, outcome=outcome,
            detail=detail))


def refusal_outcome(error: BaseException) -> str:
    return "refused" if isinstance(error, Unauthenticated | Forbidden) else "failed"

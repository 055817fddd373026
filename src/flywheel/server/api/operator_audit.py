"""The audit trail of the other planes' state-changing routes (tokens, cache configuration,
paths deleted, the state backend): recorded after each answer, with its outcome, by an ASGI
wrapper around the management app, so no handler can forget it. The operator plane's own
routes record themselves, with more detail; uploads of cache content are counted as traffic,
not audited one by one."""

from __future__ import annotations

import logging
import re

from flywheel.app.services import Services
from flywheel.auth.principal import ANONYMOUS, Principal
from flywheel.errors import FlywheelError
from flywheel.server.access import Access, Endpoint
from flywheel.server.api.operator_access import SAFE_METHODS
from flywheel.server.blocking import Offload
from flywheel.server.responses import Message, Receive, Scope, Send

log = logging.getLogger(__name__)

AUDITED_ROOTS = ("/_api/v1/", "/_state/")
# Content pushes, and the one POST that only reads.
NOT_AUDITED = frozenset({"api-upload", "api-missing"})
_PARAM = re.compile(r"\{(\w+)(?::path)?\}")


def _pattern(path: str) -> re.Pattern[str]:
    parts = _PARAM.split(path)
    regex = "".join(re.escape(p) if i % 2 == 0 else "[^/]+" if f"{{{p}:path}}" not in path
                    else ".+" for i, p in enumerate(parts))
    return re.compile(regex)


def audited(endpoints: tuple[Endpoint, ...], own: tuple[Endpoint, ...]
            ) -> list[tuple[str, re.Pattern[str], Endpoint]]:
    return [(method, _pattern(ep.path), ep) for ep in endpoints if ep not in own
            and ep.path.startswith(AUDITED_ROOTS) and ep.label not in NOT_AUDITED
            for method in ep.methods if method not in SAFE_METHODS]


def outcome(status: int) -> str:
    return "ok" if status < 400 else "refused" if status in (401, 403) else "failed"


class AuditTrail:
    def __init__(self, app: object, services: Services, access: Access, offload: Offload,
                 routes: list[tuple[str, re.Pattern[str], Endpoint]]) -> None:
        self._app = app
        self._services = services
        self._access = access
        self._offload = offload
        self._routes = routes

    def _match(self, method: str, path: str) -> Endpoint | None:
        return next((ep for m, pattern, ep in self._routes
                     if m == method and pattern.fullmatch(path)), None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self._match(scope.get("method", ""), scope.get("path", "")) \
            if scope["type"] == "http" else None
        if endpoint is None:
            await self._app(scope, receive, send)  # type: ignore[operator]
            return
        status = 500

        async def watching(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, watching)  # type: ignore[operator]
        finally:
            await self._record(scope, endpoint, status)

    async def _record(self, scope: Scope, endpoint: Endpoint, status: int) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            principal: Principal = self._access.principal(headers.get("authorization"))
        except FlywheelError:
            principal = ANONYMOUS
        client = scope.get("client")
        action = f"{endpoint.label.removeprefix('api-')}.{scope['method'].lower()}"
        try:
            await self._offload.run(lambda: self._services.operator.audit.record(
                principal, action, scope["path"][:200], address=client[0] if client else None,
                outcome=outcome(status), detail={"status": status}))
        except FlywheelError:
            log.warning("could not audit %s %s", scope["method"], scope["path"][:200])

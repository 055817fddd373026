"""The ASGI application: the cache protocols first (plain ASGI, hot), everything else
through Starlette. The route table (``ENDPOINTS``) lists every route with the resource and
action it needs."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from flywheel.app.services import Services
from flywheel.app.settings import Settings, settings_from_worker_env
from flywheel.auth.authorize import CacheAction, CacheResource, may
from flywheel.server import bazel_http, metrics, nix_http, state_http, status, ui
from flywheel.server.access import Access, Endpoint
from flywheel.server.api import attic, caches, openapi, operator, pins, state, tokens
from flywheel.server.api.attic import AtticApi
from flywheel.server.api.caches import CachesApi
from flywheel.server.api.common import error_response, route
from flywheel.server.api.operator import OperatorApi
from flywheel.server.api.operator_access import OperatorAccess
from flywheel.server.api.operator_audit import AuditTrail, audited
from flywheel.server.api.operator_ops import Operations
from flywheel.server.api.pins import PinsApi
from flywheel.server.api.state import StateApi
from flywheel.server.api.tokens import TokensApi
from flywheel.server.bazel_http import BazelHandler
from flywheel.server.blocking import Offload
from flywheel.server.errors import answer
from flywheel.server.health import health_routes
from flywheel.server.nix_http import NixHandler
from flywheel.server.responses import Message, Receive, Scope, Send, TrackedReceive, send_error
from flywheel.server.state_http import StateHttp

log = logging.getLogger(__name__)

# Anyone may scrape; per-cache samples only for caches the caller may pull from.
METRICS = Endpoint(("GET",), "/metrics", "cache", CacheAction.PULL, "metrics")
HEALTH = (Endpoint(("GET",), "/healthz", "none", None, "healthz"),
          Endpoint(("GET",), "/readyz", "none", None, "readyz"))
ENDPOINTS: tuple[Endpoint, ...] = (
    *nix_http.ENDPOINTS, *bazel_http.ENDPOINTS, *attic.ENDPOINTS, *caches.ENDPOINTS,
    *tokens.ENDPOINTS, *state_http.ENDPOINTS, *state.ENDPOINTS, *status.ENDPOINTS, METRICS,
    *HEALTH, *pins.ENDPOINTS, *operator.ENDPOINTS, *ui.ENDPOINTS, openapi.OPENAPI)


def _management_app(services: Services, access: Access, offload: Offload) -> AuditTrail:
    async def prometheus(request: Request) -> Response:
        principal = access.principal(request.headers.get("authorization"))
        public = {c.name: c.is_public for c in await offload.run(services.caches.list)}
        body, content_type = metrics.exposition(
            lambda name: name in public and may(principal, CacheResource(name, public[name]),
                                                CacheAction.PULL))
        return Response(body, media_type=content_type)

    async def not_found(request: Request, _exc: Exception) -> Response:
        return error_response(404, f"no route for {request.url.path[:200]}")

    operator_access = OperatorAccess(services, access, offload)
    ops = Operations(services, operator_access, offload)
    app = Starlette(
        routes=[*health_routes(services), route(METRICS, prometheus),
                *status.status_routes(services, access, offload),
                *AtticApi(services, access, offload).routes(),
                *CachesApi(services, access, offload).routes(),
                *PinsApi(services, access, offload).routes(),
                *TokensApi(services, access, offload).routes(),
                *StateHttp(services, access, offload).routes(),
                *StateApi(services, access, offload).routes(),
                *OperatorApi(ops, operator_access, offload).routes(),
                *ui.Pages(ops, operator_access, offload).routes(),
                openapi.openapi_route(ENDPOINTS, services.settings.base_url)],
        exception_handlers={404: not_found})
    return AuditTrail(app, services, access, offload,
                      audited(ENDPOINTS, (*operator.ENDPOINTS, *ui.ENDPOINTS)))


class FlywheelApp:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.offload = Offload(services.settings.blocking_threads)
        access = Access(services)
        self._nix = NixHandler(services, access, self.offload)
        self._bazel = BazelHandler(services, access, self.offload)
        self._rest = _management_app(services, access, self.offload)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            m = nix_http.ROUTE.fullmatch(path)
            if m is not None:
                await self._nix(scope, receive, send, m)
                return
            m = bazel_http.ROUTE.fullmatch(path)
            if m is not None:
                await self._bazel(scope, receive, send, m)
                return
            if scope["method"] not in ("GET", "HEAD"):
                receive = TrackedReceive(receive, self.services.settings.body_idle_timeout)
            await self._guarded(scope, receive, send)
            return
        await self._rest(scope, receive, send)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Whatever escapes the framework still gets a JSON answer, if none was started."""
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self._rest(scope, receive, tracking_send)
        except Exception as e:
            if started:
                raise
            status_code, message, extra = answer(e)
            await send_error(send, status_code, message, extra=extra)


def create_app(settings: Settings | None = None) -> FlywheelApp:
    """Build the app; a server worker with no argument reads what its parent validated."""
    settings = settings or settings_from_worker_env()
    return FlywheelApp(Services.open(settings, migrate_schema=False))

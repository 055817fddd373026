"""The ASGI application: Nix routes first (plain ASGI), everything else through Starlette."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flywheel.app.services import Services
from flywheel.app.settings import Settings, settings_from_worker_env
from flywheel.server import metrics
from flywheel.server.attic_api import AtticApi
from flywheel.server.bazel_http import ROUTE as BAZEL_ROUTE
from flywheel.server.bazel_http import BazelHandler
from flywheel.server.health import health_routes
from flywheel.server.nix_http import ROUTE as NIX_ROUTE
from flywheel.server.nix_http import NixHandler
from flywheel.server.responses import Receive, Scope, Send
from flywheel.server.status import status_endpoint

log = logging.getLogger(__name__)


def _management_app(services: Services) -> Starlette:
    async def prometheus(_: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    async def not_found(request: Request, _exc: Exception) -> Response:
        return JSONResponse({"code": 404, "error": "NotFound",
                             "message": f"no route for {request.url.path}"}, 404)

    return Starlette(
        routes=[*health_routes(services),
                Route("/metrics", prometheus), Route("/status", status_endpoint(services)),
                *AtticApi(services).routes()],
        exception_handlers={404: not_found})


class FlywheelApp:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._nix = NixHandler(services)
        self._bazel = BazelHandler(services)
        self._rest = _management_app(services)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            m = NIX_ROUTE.fullmatch(path)
            if m is not None:
                await self._nix(scope, receive, send, m)
                return
            m = BAZEL_ROUTE.fullmatch(path)
            if m is not None:
                await self._bazel(scope, receive, send, m)
                return
        await self._rest(scope, receive, send)  # type: ignore[arg-type]


def create_app(settings: Settings | None = None) -> FlywheelApp:
    """Build the app; a server worker with no argument reads what its parent validated."""
    settings = settings or settings_from_worker_env()
    return FlywheelApp(Services.open(settings, migrate_schema=False))

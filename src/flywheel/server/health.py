"""``/healthz`` (the process is alive) and ``/readyz`` (the server can take traffic: every
HTTP worker and the gRPC listener serve, no drain has begun, the database answers and the
data directory is there)."""

from __future__ import annotations

import logging

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from flywheel.app.services import Services
from flywheel.server.readiness import not_ready_reason

log = logging.getLogger(__name__)


def health_routes(services: Services) -> list[Route]:
    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(_: Request) -> Response:
        reason = not_ready_reason()
        if reason is not None:
            return JSONResponse({"ready": False, "reason": reason}, 503)
        try:
            with services.db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            writable = services.settings.data_dir.is_dir()
        except Exception as e:  # readiness reports any failure rather than raising it
            log.warning("not ready: %s", e)
            return JSONResponse({"ready": False, "reason": "database unavailable"}, 503)
        if not writable:
            return JSONResponse({"ready": False, "reason": "data directory missing"}, 503)
        return JSONResponse({"ready": True})

    return [Route("/healthz", healthz), Route("/readyz", readyz)]

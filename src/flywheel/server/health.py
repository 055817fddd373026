"""``/healthz`` (the process is alive) and ``/readyz`` (the server can take traffic: every
HTTP worker and the gRPC listener serve, no drain has begun, the database answers and an
upload could be stored now)."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from flywheel.app.services import Services
from flywheel.errors import FlywheelError
from flywheel.server.readiness import not_ready_reason

log = logging.getLogger(__name__)


def health_routes(services: Services) -> list[Route]:
    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok\n")

    def store_problem() -> str | None:
        try:
            with services.db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as e:  # readiness reports any failure rather than raising it
            log.warning("not ready: %s", e)
            return "database unavailable"
        try:
            services.blobs.check_writable()
        except FlywheelError as e:
            return f"storage: {e.message}"
        return None

    async def readyz(_: Request) -> Response:
        reason = not_ready_reason()
        if reason is None:
            # Off the event loop: a stuck disk must not stall the lookups beside it.
            reason = await asyncio.to_thread(store_problem)
        if reason is not None:
            return JSONResponse({"ready": False, "reason": reason}, 503)
        return JSONResponse({"ready": True})

    return [Route("/healthz", healthz), Route("/readyz", readyz)]

"""``GET /status``: per-cache sizes, entry counts, hits and misses, for the caches the caller
may read (public ones to anyone)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flywheel.app.services import Services
from flywheel.auth.authorize import CacheAction, CacheResource, may
from flywheel.auth.principal import Principal
from flywheel.db.schema import ac_entries, cas_blobs, cas_members
from flywheel.server import metrics
from flywheel.server.access import Access, Endpoint
from flywheel.server.api.common import route
from flywheel.server.blocking import Offload

# Per cache, shown only for caches the caller may pull from; global figures to anyone.
STATUS = Endpoint(("GET",), "/status", "cache", CacheAction.PULL, "status")
ENDPOINTS = (STATUS,)


def _report(services: Services, principal: Principal) -> dict[str, Any]:
    lookups = metrics.lookup_counts()
    caches: dict[str, Any] = {}
    with services.db.read() as conn:
        for cache in services.caches.list():
            if not may(principal, CacheResource(cache.name, cache.is_public), CacheAction.PULL):
                continue
            paths, nar_bytes = services.caches.stats(cache)
            ac_count, ac_bytes = conn.execute(
                select(func.count(), func.coalesce(func.sum(ac_entries.c.size), 0))
                .where(ac_entries.c.cache_id == cache.id)).one()
            cas_count, cas_bytes = conn.execute(
                select(func.count(), func.coalesce(func.sum(cas_blobs.c.size), 0))
                .join(cas_members, cas_members.c.hash == cas_blobs.c.hash)
                .where(cas_members.c.cache_id == cache.id)).one()
            counts = lookups.get(cache.name, {})
            caches[cache.name] = {
                "public": cache.is_public,
                "nix": {"paths": paths, "nar_bytes": nar_bytes,
                        "hits": counts.get("nix_hit", 0), "misses": counts.get("nix_miss", 0)},
                "bazel": {"ac_entries": int(ac_count), "ac_bytes": int(ac_bytes),
                          "cas_blobs": int(cas_count), "cas_bytes": int(cas_bytes),
                          "ac_hits": counts.get("ac_hit", 0),
                          "ac_misses": counts.get("ac_miss", 0),
                          "cas_hits": counts.get("cas_hit", 0),
                          "cas_misses": counts.get("cas_miss", 0)},
            }
        used = services.bazel_bound.usage(conn)
    return {"caches": caches,
            "bazel_size": {"used_bytes": used, "max_bytes": services.bazel_bound.max_size}}


def status_routes(services: Services, access: Access, offload: Offload) -> list[Route]:
    async def status(request: Request) -> Response:
        principal = access.principal(request.headers.get("authorization"))
        return JSONResponse(await offload.run(_report, services, principal))

    return [route(STATUS, status)]

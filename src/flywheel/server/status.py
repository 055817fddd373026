"""``GET /status``: per-cache sizes, entry counts, hits and misses, for caches the caller
may read (public ones to anyone)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flywheel.app.services import Services
from flywheel.auth.access import AccessDenied, Authenticator
from flywheel.server import metrics


def status_endpoint(services: Services):  # type: ignore[no-untyped-def]
    auth = Authenticator(services.signer, services.tokens)

    async def status(request: Request) -> Response:
        try:
            claims = auth.caller(request.headers.get("authorization"))
        except AccessDenied as e:
            return JSONResponse({"code": e.status, "error": "Unauthorized",
                                 "message": e.message}, e.status)
        bazel = services.bazel.stats()
        lookups = metrics.lookup_counts()
        caches = {}
        for cache in services.caches.list():
            if not cache.is_public and (claims is None
                                        or not claims.grants.for_cache(cache.name).r):
                continue
            paths, nar_bytes = services.caches.stats(cache)
            ac_entries, ac_bytes = bazel["action_cache"].get(cache.name, (0, 0))
            counts = lookups.get(cache.name, {})
            caches[cache.name] = {
                "public": cache.is_public,
                "nix": {"paths": paths, "nar_bytes": nar_bytes,
                        "hits": counts.get("nix_hit", 0), "misses": counts.get("nix_miss", 0)},
                "bazel": {"ac_entries": ac_entries, "ac_bytes": ac_bytes,
                          "ac_hits": counts.get("ac_hit", 0),
                          "ac_misses": counts.get("ac_miss", 0),
                          "cas_hits": counts.get("cas_hit", 0),
                          "cas_misses": counts.get("cas_miss", 0)},
            }
        return JSONResponse({
            "caches": caches,
            "bazel_cas": {"blobs": bazel["cas_blobs"], "bytes": bazel["cas_bytes"]},
            "bazel_size": {"used_bytes": bazel["used_bytes"], "max_bytes": bazel["max_size"]},
        })

    return status

"""Our extensions for caches: the caches a caller may see, and what a cache holds."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flywheel.api.cache_config import CacheList, NamedCacheConfig
from flywheel.api.objects import CacheObject, ObjectPage
from flywheel.app.services import Services
from flywheel.auth.authorize import CacheAction, CacheResource, may
from flywheel.errors import Invalid, NotFound
from flywheel.nix.storepath import is_valid_hash_part
from flywheel.server.access import Access, Endpoint
from flywheel.server.api.attic import cache_config
from flywheel.server.api.common import json_response, route
from flywheel.server.blocking import Offload

# Listing shows each cache only to a caller who may pull from it or read its configuration.
LIST = Endpoint(("GET",), "/_api/v1/caches", "cache", CacheAction.PULL, "api-caches",
                (CacheAction.READ_CONFIG,))
OBJECTS = Endpoint(("GET",), "/_api/v1/caches/{cache}/objects", "cache", CacheAction.PULL,
                   "api-objects")
DELETE_OBJECT = Endpoint(("DELETE",), "/_api/v1/caches/{cache}/objects/{hash}", "cache",
                         CacheAction.DELETE, "api-objects")
ENDPOINTS = (LIST, OBJECTS, DELETE_OBJECT)


class CachesApi:
    def __init__(self, services: Services, access: Access, offload: Offload) -> None:
        self.services = services
        self.access = access
        self.offload = offload

    async def list_caches(self, request: Request) -> Response:
        principal = self.access.principal(request.headers.get("authorization"))
        actions = (LIST.action, *LIST.or_actions)
        visible = [c for c in await self.offload.run(self.services.caches.list)
                   if any(may(principal, CacheResource(c.name, c.is_public), a)
                          for a in actions if a is not None)]
        return json_response(CacheList(caches=[
            NamedCacheConfig(name=c.name, **cache_config(self.services, c).model_dump())
            for c in visible]))

    async def list_objects(self, request: Request) -> Response:
        principal = self.access.principal(request.headers.get("authorization"))
        cache = self.access.cache(principal, request.path_params["cache"], CacheAction.PULL)
        params = request.query_params
        limit_text = params.get("limit", "100")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
            raise Invalid("limit must be between 1 and 1000")
        page, cursor = await self.offload.run(lambda: self.services.paths.list_objects(
            cache, order=params.get("order", "newest"), after=params.get("after") or None,
            limit=int(limit_text)))
        return json_response(ObjectPage(objects=[CacheObject.model_validate(o) for o in page],
                                        next=cursor))

    async def delete_object(self, request: Request) -> Response:
        principal = self.access.principal(request.headers.get("authorization"))
        cache = self.access.cache(principal, request.path_params["cache"],
                                  CacheAction.DELETE)
        hash_part = request.path_params["hash"]
        if not is_valid_hash_part(hash_part):
            raise Invalid(f"{hash_part[:64]!r} is not a store path hash")
        if not await self.offload.run(self.services.paths.delete, cache, hash_part):
            raise NotFound(f"{hash_part} is not in cache {cache.name!r}")
        return Response(status_code=204)

    def routes(self) -> list[Route]:
        return [route(LIST, self.list_caches), route(OBJECTS, self.list_objects),
                route(DELETE_OBJECT, self.delete_object)]

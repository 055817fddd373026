"""Pins over the API: list (pull), pin (push), unpin (delete)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flywheel.api.pins import PinList, PinModel, PinRequest
from flywheel.app.services import Services
from flywheel.auth.authorize import CacheAction
from flywheel.errors import NotFound
from flywheel.maintenance.pins import PinService, check_pin_name
from flywheel.server.access import Access, Endpoint
from flywheel.server.api.common import json_response, read_json, route
from flywheel.server.blocking import Offload

LIST = Endpoint(("GET",), "/_api/v1/caches/{cache}/pins", "cache", CacheAction.PULL,
                "api-pins")
PIN = Endpoint(("PUT",), "/_api/v1/caches/{cache}/pins/{name}", "cache", CacheAction.PUSH,
               "api-pins")
UNPIN = Endpoint(("DELETE",), "/_api/v1/caches/{cache}/pins/{name}", "cache",
                 CacheAction.DELETE, "api-pins")
ENDPOINTS = (LIST, PIN, UNPIN)


class PinsApi:
    def __init__(self, services: Services, access: Access, offload: Offload) -> None:
        self.access = access
        self.offload = offload
        self.pins = PinService(services.db)

    async def list_pins(self, request: Request) -> Response:
        principal = self.access.principal(request.headers.get("authorization"))
        cache = self.access.cache(principal, request.path_params["cache"], LIST.action or "")
        found = await self.offload.run(self.pins.list, cache)
        return json_response(PinList(pins=[PinModel(name=p.name, store_path=p.store_path,
                                                    created_at=p.created_at) for p in found]))

    async def pin(self, request: Request) -> Response:
        principal = self.access.principal(request.headers.get("authorization"))
        cache = self.access.cache(principal, request.path_params["cache"], PIN.action or "")
        name = check_pin_name(request.path_params["name"])
        body = await read_json(request, PinRequest)
        made = await self.offload.run(self.pins.pin, cache, body.store_path, name)
        return json_response(PinModel(name=made.name, store_path=made.store_path,
                                      created_at=made.created_at))

    async def unpin(self, request: Request) -> Response:
        principal = self.access.principal(request.headers.get("authorization"))
        cache = self.access.cache(principal, request.path_params["cache"], UNPIN.action or "")
        name = check_pin_name(request.path_params["name"])
        if not await self.offload.run(self.pins.unpin, cache, name):
            raise NotFound(f"no pin {name!r} in cache {cache.name!r}")
        return Response(status_code=204)

    def routes(self) -> list[Route]:
        return [route(LIST, self.list_pins), route(PIN, self.pin), route(UNPIN, self.unpin)]

"""Attic's v1 routes: missing paths, path upload, cache configuration. Handlers are thin:
parse the wire model, authorize through ``Access``, call the domain off the event loop,
shape the reply."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flywheel.api.cache_config import (
    CacheConfig,
    ConfigureCacheRequest,
    CreateCacheRequest,
    UpstreamModel,
)
from flywheel.api.upload import (
    MAX_PREAMBLE_BYTES,
    NAR_INFO_HEADER,
    PREAMBLE_SIZE_HEADER,
    GetMissingPathsRequest,
    GetMissingPathsResponse,
    UploadPathNarInfo,
    UploadPathResult,
)
from flywheel.app.services import Services
from flywheel.auth.authorize import CacheAction, CacheResource
from flywheel.cache.tenancy import Cache
from flywheel.cache.upstream_config import Upstream
from flywheel.errors import Invalid
from flywheel.nix.hashes import NixHash
from flywheel.nix.narinfo import NarInfo
from flywheel.nix.storepath import is_valid_hash_part, parse_path
from flywheel.server import metrics
from flywheel.server.access import Access, Endpoint
from flywheel.server.api.common import json_response, read_json, route
from flywheel.server.blocking import Offload

MISSING = Endpoint(("POST",), "/_api/v1/get-missing-paths", "cache", CacheAction.PULL,
                   "api-missing")
UPLOAD = Endpoint(("PUT",), "/_api/v1/upload-path", "cache", CacheAction.PUSH, "api-upload")
CONFIG_PATH = "/_api/v1/cache-config/{cache}"
READ_CONFIG = Endpoint(("GET",), CONFIG_PATH, "cache", CacheAction.READ_CONFIG,
                       "api-cache-config", (CacheAction.PULL,))
CREATE = Endpoint(("POST",), CONFIG_PATH, "cache", CacheAction.CREATE, "api-cache-config")
CONFIGURE = Endpoint(("PATCH",), CONFIG_PATH, "cache", CacheAction.CONFIGURE,
                     "api-cache-config")
DESTROY = Endpoint(("DELETE",), CONFIG_PATH, "cache", CacheAction.DESTROY, "api-cache-config")
CACHE_INFO = Endpoint(("GET",), "/{cache}/attic-cache-info", "cache", CacheAction.READ_CONFIG,
                      "attic-cache-info", (CacheAction.PULL,))
ENDPOINTS = (MISSING, UPLOAD, READ_CONFIG, CREATE, CONFIGURE, DESTROY, CACHE_INFO)


def cache_config(services: Services, cache: Cache) -> CacheConfig:
    base = services.settings.base_url
    return CacheConfig(
        substituter_endpoint=f"{base}/{cache.name}", api_endpoint=f"{base}/",
        public_key=cache.public_key, is_public=cache.is_public, store_dir=cache.store_dir,
        priority=cache.priority, upstream_cache_key_names=list(cache.upstream_cache_key_names),
        retention_period=cache.retention_period,
        upstreams=[UpstreamModel(**u.to_json()) for u in cache.upstreams])


class AtticApi:
    def __init__(self, services: Services, access: Access, offload: Offload) -> None:
        self.services = services
        self.access = access
        self.offload = offload

    def _cache(self, request: Request, name: str, endpoint: Endpoint) -> Cache:
        assert endpoint.action is not None
        principal = self.access.principal(request.headers.get("authorization"))
        return self.access.cache(principal, name, endpoint.action, *endpoint.or_actions)

    async def get_missing_paths(self, request: Request) -> Response:
        body = await read_json(request, GetMissingPathsRequest)
        cache = self._cache(request, body.cache, MISSING)
        bad = next((h for h in body.store_path_hashes if not is_valid_hash_part(h)), None)
        if bad is not None:
            raise Invalid(f"{bad[:64]!r} is not a store path hash")
        missing = await self.offload.run(self.services.paths.missing, cache,
                                         body.store_path_hashes)
        return json_response(GetMissingPathsResponse(missing_paths=missing))

    async def upload_path(self, request: Request) -> Response:
        stream = request.stream()
        info_json = request.headers.get(NAR_INFO_HEADER)
        preamble_size = request.headers.get(PREAMBLE_SIZE_HEADER)
        leftover = b""
        if info_json is None and preamble_size is not None:
            if not preamble_size.isdigit() or int(preamble_size) > MAX_PREAMBLE_BYTES:
                raise Invalid(f"{PREAMBLE_SIZE_HEADER} must be at most {MAX_PREAMBLE_BYTES}")
            info_bytes, leftover = await _take(stream, int(preamble_size))
            info_json = info_bytes.decode("utf-8", errors="replace")
        if info_json is None:
            raise Invalid(f"upload info missing: send {NAR_INFO_HEADER} or "
                          f"{PREAMBLE_SIZE_HEADER}")
        info = UploadPathNarInfo.model_validate_json(info_json)
        principal = self.access.principal(request.headers.get("authorization"))
        cache = self.access.cache(principal, info.cache, CacheAction.PUSH)
        narinfo = _narinfo_from_upload(info, cache.store_dir)
        readable = self.access.readable(principal)

        async def body() -> AsyncIterator[bytes]:
            if leftover:
                yield leftover
            async for chunk in stream:
                yield chunk

        outcome = await self.offload.consume(
            body(), lambda chunks: self.services.paths.upload_path(cache, narinfo, chunks,
                                                                    readable))
        metrics.count(metrics.BYTES_IN, cache.name, amount=info.nar_size)
        metrics.count(metrics.UPLOADS, cache.name, "upload-path",
                      "deduplicated" if outcome.deduplicated else "stored")
        self.services.traffic.pushed(cache.name, principal.subject, info.nar_size)
        return json_response(UploadPathResult(
            kind="Deduplicated" if outcome.deduplicated else "Uploaded",
            file_size=outcome.file_size,
            frac_deduplicated=1.0 if outcome.deduplicated else 0.0))

    async def read_config(self, request: Request) -> Response:
        cache = self._cache(request, request.path_params["cache"], READ_CONFIG)
        return json_response(cache_config(self.services, cache))

    async def attic_cache_info(self, request: Request) -> Response:
        cache = self._cache(request, request.path_params["cache"], CACHE_INFO)
        return json_response(cache_config(self.services, cache))

    async def create(self, request: Request) -> Response:
        name = request.path_params["cache"]
        principal = self.access.principal(request.headers.get("authorization"))
        self.access.authorize(principal, CacheResource(name, None), CacheAction.CREATE)
        body = await read_json(request, CreateCacheRequest)
        names = body.upstream_cache_key_names
        cache = await self.offload.run(lambda: self.services.caches.create(
            name, is_public=body.is_public, priority=body.priority,
            upstream_cache_key_names=tuple(names) if names is not None else None))
        return json_response(cache_config(self.services, cache), 201)

    async def configure(self, request: Request) -> Response:
        cache = self._cache(request, request.path_params["cache"], CONFIGURE)
        patch = await read_json(request, ConfigureCacheRequest)
        names = patch.upstream_cache_key_names
        paths = self.services.paths

        def apply() -> Cache:
            updated = self.services.caches.configure(
                cache.name, is_public=patch.is_public, priority=patch.priority,
                upstream_cache_key_names=tuple(names) if names is not None else None,
                regenerate_keypair=patch.keypair == "Generate",
                retention_period=patch.retention_period,
                upstreams=None if patch.upstreams is None else tuple(
                    Upstream.of(u.url, u.public_key) for u in patch.upstreams))
            if patch.keypair == "Generate":
                paths.resign_stale(updated)
            return updated

        return json_response(cache_config(self.services, await self.offload.run(apply)))

    async def destroy(self, request: Request) -> Response:
        cache = self._cache(request, request.path_params["cache"], DESTROY)
        await self.offload.run(self.services.caches.destroy, cache.name)
        return Response(status_code=204)

    def routes(self) -> list[Route]:
        return [route(MISSING, self.get_missing_paths), route(UPLOAD, self.upload_path),
                route(READ_CONFIG, self.read_config), route(CREATE, self.create),
                route(CONFIGURE, self.configure), route(DESTROY, self.destroy),
                route(CACHE_INFO, self.attic_cache_info)]


async def _take(stream: AsyncIterator[bytes], n: int) -> tuple[bytes, bytes]:
    """The first ``n`` bytes of a stream, and whatever of the next chunk came with them."""
    buf = b""
    async for chunk in stream:
        buf += chunk
        if len(buf) >= n:
            break
    if len(buf) < n:
        raise Invalid("body ended inside the upload-info preamble")
    return buf[:n], buf[n:]


def _narinfo_from_upload(info: UploadPathNarInfo, store_dir: str) -> NarInfo:
    """Attic's upload info as a narinfo; every field is checked as strictly as a pushed
    narinfo would be."""
    try:
        store_path = parse_path(info.store_path, store_dir)
        if store_path.hash_part != info.store_path_hash:
            raise Invalid(f"store_path_hash {info.store_path_hash[:64]!r} does not match "
                          f"store_path {info.store_path[:200]!r}")
        return NarInfo(
            store_path=store_path, url="nar/pending.nar", compression="none",
            nar_hash=NixHash.parse(info.nar_hash), nar_size=info.nar_size,
            references=[parse_path(r, store_dir) for r in info.references],
            deriver=parse_path(info.deriver, store_dir) if info.deriver else None,
            system=info.system, sigs=list(info.sigs), ca=info.ca)
    except Invalid:
        raise
    except ValueError as e:
        raise Invalid(f"invalid upload info: {e}") from None

"""The Attic-compatible API under /_api/v1, and our extensions beside it. Handlers are thin:
parse the wire model, check the permission, call the domain service, shape the reply."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flywheel.api.cache_config import (
    CacheConfig,
    CacheList,
    ConfigureCacheRequest,
    CreateCacheRequest,
    NamedCacheConfig,
)
from flywheel.api.objects import CacheObject, ObjectPage
from flywheel.api.tokens import (
    MintTokenRequest,
    MintTokenResponse,
    RevokeTokenRequest,
    RevokeTokenResponse,
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
from flywheel.auth.access import AccessDenied, Authenticator, authorize
from flywheel.auth.permissions import Grants
from flywheel.auth.tokens import TokenClaims, parse_duration
from flywheel.cache.nix.verify import UploadError
from flywheel.cache.tenancy import Cache, CacheError, CacheExists, CacheNotFound
from flywheel.nix.hashes import NixHash
from flywheel.nix.narinfo import NarInfo, NarInfoError
from flywheel.nix.storepath import is_valid_hash_part, parse_path
from flywheel.server import metrics
from flywheel.server.responses import error_body

log = logging.getLogger(__name__)

MAX_JSON_BODY = 4 << 20
_REASON_STATUS = ((CacheNotFound, 404), (CacheExists, 409))


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> Response:
    headers = {"www-authenticate": 'Bearer realm="flywheel"'} if status == 401 else None
    return Response(error_body(status, message), status, media_type="application/json",
                    headers=headers)


def _json(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status, media_type="application/json")


Handler = Callable[[Request], Awaitable[Response]]


def _api(route: str, handler: Handler) -> Handler:
    """Map every refusal to Attic's error body with the right status, and count it."""

    async def wrapped(request: Request) -> Response:
        try:
            response = await handler(request)
        except AccessDenied as e:
            response = _error(e.status, e.message)
        except ApiError as e:
            response = _error(e.status, e.message)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            response = _error(400, f"{where}: {first['msg']}")
        except (UploadError, NarInfoError) as e:
            response = _error(400, str(e))
        except CacheError as e:
            status = next((s for t, s in _REASON_STATUS if isinstance(e, t)), 400)
            response = _error(status, str(e))
        metrics.count(metrics.REQUESTS, route, metrics.method_label(request.method),
                      str(response.status_code))
        return response

    return wrapped


async def _read_json(request: Request, model: type[BaseModel]) -> Any:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BODY:
            raise ApiError(413, f"request body larger than {MAX_JSON_BODY} bytes")
    try:
        return model.model_validate_json(body)
    except ValidationError as e:
        if any(err["type"] == "json_invalid" for err in e.errors()):
            raise ApiError(400, "request body is not valid JSON") from None
        raise


class AtticApi:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.auth = Authenticator(services.signer, services.tokens)

    # -- helpers --

    def _caller(self, request: Request) -> TokenClaims | None:
        return self.auth.caller(request.headers.get("authorization"))

    def _cache(self, claims: TokenClaims | None, name: str, *needed: str) -> Cache:
        """The cache once the caller holds one of ``needed`` on it (enumeration-safe)."""
        cache = self.services.caches.find(name)
        denial: AccessDenied | None = None
        for permission in needed:
            try:
                authorize(claims, name, cache.is_public if cache else None, permission)
                break
            except AccessDenied as e:
                denial = e
        else:
            assert denial is not None
            raise denial
        if cache is None:
            raise AccessDenied(404, f"no cache named {name!r}")
        return cache

    def _admin(self, request: Request) -> TokenClaims:
        claims = self._caller(request)
        if claims is None:
            raise AccessDenied(401, "authentication required")
        if not claims.grants.admin:
            raise AccessDenied(403, f"token for {claims.sub!r} is not an admin token")
        return claims

    def _config(self, cache: Cache) -> CacheConfig:
        base = self.services.settings.base_url
        return CacheConfig(
            substituter_endpoint=f"{base}/{cache.name}", api_endpoint=f"{base}/",
            public_key=cache.public_key, is_public=cache.is_public, store_dir=cache.store_dir,
            priority=cache.priority,
            upstream_cache_key_names=list(cache.upstream_cache_key_names),
            retention_period=cache.retention_period)

    # -- Attic v1 --

    async def get_missing_paths(self, request: Request) -> Response:
        body: GetMissingPathsRequest = await _read_json(request, GetMissingPathsRequest)
        cache = self._cache(self._caller(request), body.cache, "r")
        bad = next((h for h in body.store_path_hashes if not is_valid_hash_part(h)), None)
        if bad is not None:
            raise ApiError(400, f"{bad[:64]!r} is not a store path hash")
        return _json(GetMissingPathsResponse(
            missing_paths=self.services.paths.missing(cache, body.store_path_hashes)))

    async def upload_path(self, request: Request) -> Response:
        stream = request.stream()
        info_json = request.headers.get(NAR_INFO_HEADER)
        preamble_size = request.headers.get(PREAMBLE_SIZE_HEADER)
        leftover = b""
        if info_json is None and preamble_size is not None:
            if not preamble_size.isdigit() or int(preamble_size) > MAX_PREAMBLE_BYTES:
                raise ApiError(400, f"{PREAMBLE_SIZE_HEADER} must be at most "
                                    f"{MAX_PREAMBLE_BYTES}")
            info_bytes, leftover = await _take(stream, int(preamble_size))
            info_json = info_bytes.decode("utf-8", errors="replace")
        if info_json is None:
            raise ApiError(400, f"upload info missing: send {NAR_INFO_HEADER} or "
                                f"{PREAMBLE_SIZE_HEADER}")
        info = UploadPathNarInfo.model_validate_json(info_json)
        cache = self._cache(self._caller(request), info.cache, "w")
        narinfo = _narinfo_from_upload(info, cache.store_dir)

        async def body() -> AsyncIterator[bytes]:
            if leftover:
                yield leftover
            async for chunk in stream:
                yield chunk

        fresh, kept = await self.services.paths.upload_path(cache, narinfo, body())
        metrics.count(metrics.BYTES_IN, cache.name, amount=info.nar_size)
        metrics.count(metrics.UPLOADS, cache.name, "upload-path",
                      "stored" if fresh else "deduplicated")
        return _json(UploadPathResult(kind="Uploaded" if fresh else "Deduplicated",
                                      file_size=kept.file_size,
                                      frac_deduplicated=0.0 if fresh else 1.0))

    async def cache_config(self, request: Request) -> Response:
        name = request.path_params["cache"]
        claims = self._caller(request)
        caches = self.services.caches
        if request.method == "GET":
            return _json(self._config(self._cache(claims, name, "r", "cq")))
        if request.method == "POST":
            authorize(claims, name, None, "cc")
            body: CreateCacheRequest = await _read_json(request, CreateCacheRequest)
            cache = caches.create(name, is_public=body.is_public, priority=body.priority,
                                  upstream_cache_key_names=tuple(body.upstream_cache_key_names))
            return _json(self._config(cache), 201)
        if request.method == "PATCH":
            self._cache(claims, name, "cr")
            patch: ConfigureCacheRequest = await _read_json(request, ConfigureCacheRequest)
            names = patch.upstream_cache_key_names
            cache = caches.configure(
                name, is_public=patch.is_public, priority=patch.priority,
                upstream_cache_key_names=tuple(names) if names is not None else None,
                regenerate_keypair=patch.keypair == "Generate")
            return _json(self._config(cache))
        self._cache(claims, name, "cd")
        caches.destroy(name)
        return Response(status_code=204)

    async def attic_cache_info(self, request: Request) -> Response:
        cache = self._cache(self._caller(request), request.path_params["cache"], "r", "cq")
        return _json(self._config(cache))

    # -- extensions --

    async def list_caches(self, request: Request) -> Response:
        claims = self._caller(request)
        visible = [c for c in self.services.caches.list()
                   if c.is_public or (claims is not None and (
                       claims.grants.for_cache(c.name).r or claims.grants.for_cache(c.name).cq))]
        return _json(CacheList(caches=[NamedCacheConfig(name=c.name, **self._config(c)
                                                        .model_dump()) for c in visible]))

    async def list_objects(self, request: Request) -> Response:
        cache = self._cache(self._caller(request), request.path_params["cache"], "r")
        params = request.query_params
        limit_text = params.get("limit", "100")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
            raise ApiError(400, "limit must be between 1 and 1000")
        page, cursor = self.services.paths.list_objects(
            cache, order=params.get("order", "newest"), after=params.get("after") or None,
            limit=int(limit_text))
        return _json(ObjectPage(objects=[CacheObject.model_validate(o) for o in page],
                                next=cursor))

    async def delete_object(self, request: Request) -> Response:
        cache = self._cache(self._caller(request), request.path_params["cache"], "d")
        hash_part = request.path_params["hash"]
        if not is_valid_hash_part(hash_part):
            raise ApiError(400, f"{hash_part[:64]!r} is not a store path hash")
        if not self.services.paths.delete(cache, hash_part):
            raise ApiError(404, f"{hash_part} is not in cache {cache.name!r}")
        return Response(status_code=204)

    async def mint_token(self, request: Request) -> Response:
        self._admin(request)
        body: MintTokenRequest = await _read_json(request, MintTokenRequest)
        try:
            grants = Grants.from_request(body.caches, body.admin)
            validity = parse_duration(body.validity)
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        token, claims = self.services.issue_token(body.sub, grants, validity)
        return _json(MintTokenResponse(token=token, id=str(claims.jti),
                                       expires_at=claims.expires_at), 201)

    async def revoke_token(self, request: Request) -> Response:
        self._admin(request)
        body: RevokeTokenRequest = await _read_json(request, RevokeTokenRequest)
        revoked = self.services.tokens.revoke(jti=body.id, sub=body.sub)
        if body.id is not None and revoked == 0:
            raise ApiError(404, f"no token with id {body.id!r}")
        return _json(RevokeTokenResponse(revoked=revoked))

    def routes(self) -> list[Route]:
        return [
            Route("/_api/v1/get-missing-paths", _api("api-missing", self.get_missing_paths),
                  methods=["POST"]),
            Route("/_api/v1/upload-path", _api("api-upload", self.upload_path),
                  methods=["PUT"]),
            Route("/_api/v1/cache-config/{cache}", _api("api-cache-config", self.cache_config),
                  methods=["GET", "POST", "PATCH", "DELETE"]),
            Route("/_api/v1/caches", _api("api-caches", self.list_caches), methods=["GET"]),
            Route("/_api/v1/caches/{cache}/objects", _api("api-objects", self.list_objects),
                  methods=["GET"]),
            Route("/_api/v1/caches/{cache}/objects/{hash}",
                  _api("api-objects", self.delete_object), methods=["DELETE"]),
            Route("/_api/v1/tokens", _api("api-tokens", self.mint_token), methods=["POST"]),
            Route("/_api/v1/tokens/revoke", _api("api-tokens", self.revoke_token),
                  methods=["POST"]),
            Route("/{cache}/attic-cache-info", _api("attic-cache-info", self.attic_cache_info),
                  methods=["GET"]),
        ]


async def _take(stream: AsyncIterator[bytes], n: int) -> tuple[bytes, bytes]:
    """The first ``n`` bytes of a stream, and whatever of the next chunk came with them."""
    buf = b""
    async for chunk in stream:
        buf += chunk
        if len(buf) >= n:
            break
    if len(buf) < n:
        raise ApiError(400, "body ended inside the upload-info preamble")
    return buf[:n], buf[n:]


def _narinfo_from_upload(info: UploadPathNarInfo, store_dir: str) -> NarInfo:
    """Attic's upload info as a narinfo; every field is checked as strictly as a pushed
    narinfo would be."""
    try:
        store_path = parse_path(info.store_path, store_dir)
        if store_path.hash_part != info.store_path_hash:
            raise ApiError(400, f"store_path_hash {info.store_path_hash!r} does not match "
                                f"store_path {info.store_path!r}")
        return NarInfo(
            store_path=store_path, url="nar/pending.nar", compression="none",
            nar_hash=NixHash.parse(info.nar_hash), nar_size=info.nar_size,
            references=[parse_path(r, store_dir) for r in info.references],
            deriver=parse_path(info.deriver, store_dir) if info.deriver else None,
            system=info.system, sigs=list(info.sigs), ca=info.ca)
    except ApiError:
        raise
    except ValueError as e:
        raise ApiError(400, f"invalid upload info: {e}") from None


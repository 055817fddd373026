"""HTTP calls to a flywheel (or Attic) server, with the server's refusals turned into
:class:`ApiError` carrying its own message."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from flywheel.api.cache_config import CacheConfig, CacheList
from flywheel.api.upload import (
    NAR_INFO_HEADER,
    GetMissingPathsRequest,
    GetMissingPathsResponse,
    UploadPathNarInfo,
    UploadPathResult,
)
from flywheel.client.errors import ApiError, ClientError
from flywheel.client.profiles import Profile

# Short for metadata calls; an upload's read timeout starts once its body is sent, and
# the server then only finishes verifying and commits.
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
UPLOAD_TIMEOUT = httpx.Timeout(300.0, connect=10.0)
MISSING_BATCH = 1000

M = TypeVar("M", bound=BaseModel)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    text = response.text.strip()
    return f"HTTP {response.status_code}" + (f": {text[:200]}" if text else "")


class Api:
    """One server profile's API; safe to share between upload threads (httpx's pool is)."""

    def __init__(self, profile: Profile, *, max_connections: int = 10,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.profile = profile
        headers = {"user-agent": "flywheel-client"}
        if profile.token:
            headers["authorization"] = f"Bearer {profile.token}"
        self._http = httpx.Client(
            base_url=profile.url, headers=headers, timeout=TIMEOUT, transport=transport,
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- plumbing --

    def request(self, method: str, path: str, *, json_body: Any = None,
                **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=json_body, **kwargs)
        except httpx.TransportError as e:
            raise ClientError(f"cannot reach {self.profile.url}: {e or type(e).__name__}"
                              ) from None
        if response.status_code >= 400:
            raise ApiError(response.status_code, _message(response))
        return response

    def parse(self, model: type[M], response: httpx.Response) -> M:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as e:
            raise ClientError(f"{self.profile.url} answered {response.request.method} "
                              f"{response.request.url.path} with an unexpected body: "
                              f"{e.errors()[0]['msg']}") from None

    # -- endpoints --

    def healthz(self) -> None:
        self.request("GET", "/healthz")

    def cache_config(self, cache: str) -> CacheConfig:
        return self.parse(CacheConfig,
                           self.request("GET", f"/_api/v1/cache-config/{cache}"))

    def caches(self) -> CacheList:
        return self.parse(CacheList, self.request("GET", "/_api/v1/caches"))

    def missing_paths(self, cache: str, hash_parts: list[str]) -> set[str]:
        """Which of ``hash_parts`` the cache lacks, asked in batches the server accepts."""
        missing: set[str] = set()
        for i in range(0, len(hash_parts), MISSING_BATCH):
            body = GetMissingPathsRequest(cache=cache,
                                          store_path_hashes=hash_parts[i:i + MISSING_BATCH])
            response = self.request("POST", "/_api/v1/get-missing-paths",
                                    json_body=body.model_dump())
            missing.update(self.parse(GetMissingPathsResponse, response).missing_paths)
        return missing

    def upload_path(self, info: UploadPathNarInfo, body: Iterable[bytes]) -> UploadPathResult:
        """Stream one NAR. Content-Length is the NAR size, so the body is not chunked and
        the server can refuse an oversized NAR before reading it."""
        headers = {NAR_INFO_HEADER: info.model_dump_json(),
                   "content-type": "application/octet-stream",
                   "content-length": str(info.nar_size)}
        response = self.request("PUT", "/_api/v1/upload-path", content=_iterate(body),
                                headers=headers, timeout=UPLOAD_TIMEOUT)
        return self.parse(UploadPathResult, response)


def _iterate(body: Iterable[bytes]) -> Iterator[bytes]:
    # httpx wants an iterator for streamed content; a plain iterable such as a list
    # would be taken for form data.
    yield from body

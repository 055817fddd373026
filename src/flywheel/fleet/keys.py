"""The caches pools name, checked against the cache server: each must exist there, and a
Nix cache's public key comes from it (``GET /_api/v1/cache-config/<cache>``) unless the
spec pins it."""

from __future__ import annotations

import httpx

from flywheel.errors import FailedPrecondition
from flywheel.fleet.spec import Fleet


class CacheLookupError(FailedPrecondition):
    """A pool's cache key could not be had from the cache server."""


def caches_named(fleet: Fleet) -> list[str]:
    names: dict[str, None] = {}
    for pool in fleet.pools:
        if pool.cache is not None:
            for name in (pool.cache.nix, pool.cache.bazel):
                if name:
                    names[name] = None
    return list(names)


def cache_public_key(http: httpx.Client, base: str, cache: str) -> str:
    url = f"{base}/_api/v1/cache-config/{cache}"
    try:
        response = http.get(url)
    except httpx.TransportError as e:
        raise CacheLookupError(f"cannot reach the cache server at {base} to read cache "
                               f"{cache!r}: {e or type(e).__name__}; pin its key under "
                               "cacheServer.publicKeys or point --server at a reachable "
                               "address") from None
    if response.status_code == 404:
        raise CacheLookupError(f"the cache server at {base} has no cache {cache!r} "
                               "(create it with: flywheel cache create " + cache + ")")
    if response.status_code in (401, 403):
        raise CacheLookupError(f"cache {cache!r} on {base} is private and the request was "
                               f"refused ({response.status_code}); give a token that may "
                               "read it (--server PROFILE, see flywheel login)")
    if response.status_code != 200:
        raise CacheLookupError(f"{base} answered {response.status_code} for cache {cache!r}")
    try:
        key = response.json()["public_key"]
    except (ValueError, KeyError, TypeError):
        raise CacheLookupError(f"{url} did not answer with a cache configuration") from None
    return str(key)


def resolve_keys(fleet: Fleet, *, server_url: str | None = None,
                 token: str | None = None) -> dict[str, str]:
    """Every cache a pool names, with its public key: pinned ones from the spec, the rest
    from the server (which also proves they exist)."""
    names = caches_named(fleet)
    if not names:
        return {}
    assert fleet.cache_server is not None
    keys = {n: k for n, k in fleet.cache_server.public_keys.items() if n in names}
    missing = [n for n in names if n not in keys]
    if missing:
        base = (server_url or fleet.cache_server.url).rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        with httpx.Client(headers=headers, timeout=httpx.Timeout(10.0, connect=5.0)) as http:
            keys.update({name: cache_public_key(http, base, name) for name in missing})
    return keys

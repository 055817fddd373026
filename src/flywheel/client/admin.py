"""Remote cache and token administration over the API, for ``flywheel cache ... --server``
and ``flywheel token ... --server``."""

from __future__ import annotations

from collections.abc import Sequence

from flywheel.api.cache_config import (
    CacheConfig,
    ConfigureCacheRequest,
    CreateCacheRequest,
    NamedCacheConfig,
)
from flywheel.api.tokens import (
    MintTokenRequest,
    MintTokenResponse,
    RevokeTokenResponse,
    TokenList,
    TokenRecord,
)
from flywheel.client.api import Api
from flywheel.client.errors import ClientError
from flywheel.nix.storepath import is_valid_hash_part

# What each `token mint` flag grants, in the claim's spelling. Pushing implies pulling,
# as in the local command: `nix copy --to` reads narinfos to skip what is there.
FLAG_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "pull": ("r",), "push": ("r", "w"), "delete": ("r", "d"), "create_cache": ("cc",),
    "configure_cache": ("cr", "cq"), "destroy_cache": ("cd",),
}
# What each `token mint --state-*` flag grants on matching workspaces. Writing implies
# reading and locking, which is what `terraform apply` does; admin includes everything.
STATE_FLAG_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "state_read": ("r",), "state_lock": ("r", "l"), "state_write": ("r", "w", "l"),
    "state_admin": ("r", "w", "l", "a"),
}


def create_cache(api: Api, name: str, *, is_public: bool, priority: int | None,
                 upstream_cache_key_names: Sequence[str] | None = None) -> CacheConfig:
    body = CreateCacheRequest(
        keypair="Generate", is_public=is_public, priority=priority, store_dir="/nix/store",
        upstream_cache_key_names=None if upstream_cache_key_names is None
        else list(upstream_cache_key_names))
    response = api.request("POST", f"/_api/v1/cache-config/{name}",
                           json_body=body.model_dump(mode="json"))
    return api.parse(CacheConfig, response)


def list_caches(api: Api) -> list[NamedCacheConfig]:
    return api.caches().caches


def cache_info(api: Api, name: str) -> CacheConfig:
    return api.cache_config(name)


def configure_cache(api: Api, name: str, *, is_public: bool | None = None,
                    priority: int | None = None,
                    upstream_cache_key_names: Sequence[str] | None = None,
                    regenerate_keypair: bool = False) -> CacheConfig:
    patch = ConfigureCacheRequest(
        is_public=is_public, priority=priority,
        upstream_cache_key_names=(list(upstream_cache_key_names)
                                  if upstream_cache_key_names is not None else None),
        keypair="Generate" if regenerate_keypair else None)
    # Only what the user asked to change: an absent field means "leave it".
    body = patch.model_dump(mode="json", exclude_none=True)
    if not body:
        raise ClientError("nothing to change: give --public/--private, --priority, "
                          "--upstream-key or --regenerate-keypair")
    response = api.request("PATCH", f"/_api/v1/cache-config/{name}", json_body=body)
    return api.parse(CacheConfig, response)


def destroy_cache(api: Api, name: str) -> None:
    api.request("DELETE", f"/_api/v1/cache-config/{name}")


def delete_path(api: Api, cache: str, hash_part: str) -> None:
    if not is_valid_hash_part(hash_part):
        raise ClientError(f"{hash_part!r} is not a store path hash")
    api.request("DELETE", f"/_api/v1/caches/{cache}/objects/{hash_part}")


def permissions(**globs: Sequence[str]) -> dict[str, dict[str, int]]:
    """Merge per-flag cache globs (``pull=["main"], push=["team-*"]``) into the claim's
    ``{"glob": {"r": 1, ...}}``, keeping first-seen glob order."""
    return _merge(FLAG_PERMISSIONS, globs)


def workspace_permissions(**globs: Sequence[str]) -> dict[str, dict[str, int]]:
    """The same for workspace globs (``state_read=["prod-*"]``)."""
    return _merge(STATE_FLAG_PERMISSIONS, globs)


def _merge(meaning: dict[str, tuple[str, ...]],
           globs: dict[str, Sequence[str]]) -> dict[str, dict[str, int]]:
    merged: dict[str, dict[str, int]] = {}
    for flag, names in globs.items():
        if flag not in meaning:
            raise ValueError(f"unknown permission flag {flag!r}")
        for glob in names:
            entry = merged.setdefault(glob, {})
            for perm in meaning[flag]:
                entry[perm] = 1
    return merged


def mint_token(api: Api, sub: str, *, validity: str, caches: dict[str, dict[str, int]],
               admin: bool = False,
               workspaces: dict[str, dict[str, int]] | None = None) -> MintTokenResponse:
    body = MintTokenRequest(sub=sub, validity=validity, caches=caches, admin=admin,
                            workspaces=workspaces or {})
    # `admin` and `workspaces` are our extensions; an Attic server is only sent the fields
    # it knows.
    ours = {name for name, asked in (("admin", admin), ("workspaces", workspaces)) if not asked}
    response = api.request("POST", "/_api/v1/tokens",
                           json_body=body.model_dump(mode="json", exclude=ours or None))
    return api.parse(MintTokenResponse, response)


def revoke_tokens(api: Api, *, token_id: str | None = None, sub: str | None = None) -> int:
    if (token_id is None) == (sub is None):
        raise ClientError("give exactly one of --id or --sub")
    body = {"id": token_id} if token_id is not None else {"sub": sub}
    response = api.request("POST", "/_api/v1/tokens/revoke", json_body=body)
    return api.parse(RevokeTokenResponse, response).revoked


def list_tokens(api: Api, sub: str | None = None) -> list[TokenRecord]:
    response = api.request("GET", "/_api/v1/tokens", params={"sub": sub} if sub else None)
    return api.parse(TokenList, response).tokens

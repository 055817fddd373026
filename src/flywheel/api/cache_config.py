"""``/_api/v1/cache-config/<cache>`` and ``GET /_api/v1/caches``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class UpstreamModel(BaseModel):
    """A pull-through upstream: a binary cache URL and the key its narinfos are signed by."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048)
    public_key: str = Field(max_length=512)


class CacheConfig(BaseModel):
    substituter_endpoint: str
    api_endpoint: str
    public_key: str
    is_public: bool
    store_dir: str
    priority: int
    upstream_cache_key_names: list[str]
    retention_period: int | None = None
    # Our extension: pull-through upstreams, tried in order on a miss.
    upstreams: list[UpstreamModel] = Field(default_factory=list)


class NamedCacheConfig(CacheConfig):
    name: str


class CacheList(BaseModel):
    caches: list[NamedCacheConfig]


class CreateCacheRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keypair: Literal["Generate"] = "Generate"
    is_public: bool = True
    # Unset: the server's defaults (priority 41, just below cache.nixos.org; upstream
    # cache.nixos.org-1).
    priority: int | None = Field(default=None, ge=0, le=10_000)
    store_dir: Literal["/nix/store"] = "/nix/store"
    upstream_cache_key_names: list[str] | None = None


class ConfigureCacheRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    is_public: bool | None = None
    priority: int | None = Field(default=None, ge=0, le=10_000)
    upstream_cache_key_names: list[str] | None = None
    # Seconds a store path is kept after it was last asked for (garbage collection); as in
    # Attic, "Global" means no period of its own.
    retention_period: int | Literal["Global"] | None = Field(default=None, ge=1)
    # Our extension: the pull-through upstreams (replaces the list; [] for none).
    upstreams: list[UpstreamModel] | None = None
    # Our extension: rotate the signing key and re-sign every path.
    keypair: Literal["Generate"] | None = None

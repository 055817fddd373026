"""``/_api/v1/caches/<cache>/objects``: what a cache holds, paged."""

from __future__ import annotations

from pydantic import BaseModel


class CacheObject(BaseModel):
    store_path: str
    store_path_hash: str
    nar_hash: str
    nar_size: int
    created_at: int


class ObjectPage(BaseModel):
    objects: list[CacheObject]
    next: str | None

"""``/_api/v1/caches/<cache>/pins``: closures garbage collection keeps."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PinModel(BaseModel):
    name: str
    store_path: str
    created_at: int


class PinList(BaseModel):
    pins: list[PinModel]


class PinRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store_path: str = Field(max_length=4096)

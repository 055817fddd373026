"""``PUT /_api/v1/upload-path`` and ``POST /_api/v1/get-missing-paths``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

NAR_INFO_HEADER = "x-attic-nar-info"
PREAMBLE_SIZE_HEADER = "x-attic-nar-info-preamble-size"
MAX_PREAMBLE_BYTES = 1 << 20
MAX_MISSING_QUERY = 10_000


class UploadPathNarInfo(BaseModel):
    """What the client tells about the NAR it streams; verified against the bytes."""

    model_config = ConfigDict(extra="ignore")

    cache: str
    store_path_hash: str
    store_path: str
    references: list[str] = Field(default_factory=list, max_length=100_000)
    system: str | None = None
    deriver: str | None = None
    sigs: list[str] = Field(default_factory=list, max_length=1000)
    ca: str | None = None
    nar_hash: str
    nar_size: int = Field(ge=0)


class UploadPathResult(BaseModel):
    kind: Literal["Uploaded", "Deduplicated"]
    file_size: int
    frac_deduplicated: float


class GetMissingPathsRequest(BaseModel):
    cache: str
    store_path_hashes: list[str] = Field(max_length=MAX_MISSING_QUERY)


class GetMissingPathsResponse(BaseModel):
    missing_paths: list[str]

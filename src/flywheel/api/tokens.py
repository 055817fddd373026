"""``POST /_api/v1/tokens`` and ``/_api/v1/tokens/revoke`` (admin tokens only)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class MintTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sub: str = Field(min_length=1, max_length=255)
    validity: str = "30d"
    caches: dict[str, dict[str, int]] = Field(default_factory=dict, max_length=100)
    admin: bool = False
    # Our extension: state-workspace globs to {"r","w","l","a"} bits.
    workspaces: dict[str, dict[str, int]] = Field(default_factory=dict, max_length=100)


class MintTokenResponse(BaseModel):
    token: str
    id: str
    expires_at: int | None


class RevokeTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    sub: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> RevokeTokenRequest:
        if (self.id is None) == (self.sub is None):
            raise ValueError("give exactly one of id or sub")
        return self


class RevokeTokenResponse(BaseModel):
    revoked: int


class TokenRecord(BaseModel):
    """A token minted by this server, as listed to admins: never the token itself."""

    id: str
    sub: str
    issued_at: int
    expires_at: int | None
    revoked_at: int | None
    permissions: dict[str, Any]


class TokenList(BaseModel):
    tokens: list[TokenRecord]

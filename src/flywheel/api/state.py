"""The state plane's JSON API (``/_api/v1/state/...``): workspaces, their history, a
rollback, a force-unlock. State content itself is served as it was stored, not in JSON."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StateVersion(BaseModel):
    version: int
    serial: int | None
    lineage: str | None
    created_by: str
    created_at: int
    size: int
    sha256: str
    note: str | None


class StateLock(BaseModel):
    id: str
    locked_by: str
    locked_at: int
    # The lock-info JSON as the locker sent it (OpenTofu's ID, Operation, Who, ...).
    info: str


class StateWorkspace(BaseModel):
    name: str
    current: StateVersion | None
    lock: StateLock | None
    versions: int


class StateWorkspaceList(BaseModel):
    workspaces: list[StateWorkspace]


class StateHistory(BaseModel):
    workspace: str
    versions: list[StateVersion]


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: int = Field(ge=1)


class UnlockResponse(BaseModel):
    released: StateLock | None

"""The state plane over HTTP, for ``flywheel state ... --server``: the JSON API for history,
rollback and unlock, and the backend protocol itself for writing a state."""

from __future__ import annotations

import base64
import hashlib

from flywheel.api.state import (
    RollbackRequest,
    StateHistory,
    StateVersion,
    StateWorkspace,
    StateWorkspaceList,
    UnlockResponse,
)
from flywheel.client.api import Api

_BASE = "/_api/v1/state"


def workspaces(api: Api) -> list[StateWorkspace]:
    return api.parse(StateWorkspaceList, api.request("GET", _BASE)).workspaces


def history(api: Api, workspace: str) -> StateHistory:
    return api.parse(StateHistory, api.request("GET", f"{_BASE}/{workspace}/versions"))


def content(api: Api, workspace: str, version: int | None) -> bytes:
    params = {"version": str(version)} if version is not None else None
    return api.request("GET", f"{_BASE}/{workspace}/content", params=params).content


def rollback(api: Api, workspace: str, to: int) -> StateVersion:
    response = api.request("POST", f"{_BASE}/{workspace}/rollback",
                           json_body=RollbackRequest(to=to).model_dump())
    return api.parse(StateVersion, response)


def unlock(api: Api, workspace: str) -> UnlockResponse:
    return api.parse(UnlockResponse, api.request("POST", f"{_BASE}/{workspace}/unlock"))


def store(api: Api, workspace: str, body: bytes, *, force: bool) -> None:
    """Write a state as OpenTofu does, checksum included."""
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    api.request("POST", f"/_state/{workspace}", content=body,
                params={"force": "true"} if force else None,
                headers={"content-type": "application/json", "content-md5": md5})

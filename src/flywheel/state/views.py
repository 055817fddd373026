"""Workspaces and versions as the JSON API and the command line show them."""

from __future__ import annotations

from flywheel.api.state import StateLock, StateVersion, StateWorkspace
from flywheel.state.store import Lock, Version, Workspace


def version_view(v: Version) -> StateVersion:
    return StateVersion(version=v.version, serial=v.serial, lineage=v.lineage,
                        created_by=v.created_by, created_at=v.created_at, size=v.size,
                        sha256=v.sha256, note=v.note)


def lock_view(lock: Lock | None) -> StateLock | None:
    if lock is None:
        return None
    return StateLock(id=lock.id, locked_by=lock.locked_by, locked_at=lock.locked_at,
                     info=lock.info)


def workspace_view(ws: Workspace) -> StateWorkspace:
    return StateWorkspace(name=ws.name,
                          current=version_view(ws.current) if ws.current else None,
                          lock=lock_view(ws.lock), versions=ws.versions)

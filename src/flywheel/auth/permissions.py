"""Attic's permission bits per cache-name glob, our bits per state-workspace glob, and how a
token's claims resolve them. Cache grants sit in Attic's claim, untouched, so Attic clients
read our tokens; workspace grants and the admin flag sit in our own claim."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, fields
from typing import Any, TypeVar

ATTIC_CLAIM = "https://jwt.attic.rs/v1"
FLYWHEEL_CLAIM = "https://flywheel.gloriousflywheel.dev/v1"

_GLOB = re.compile(r"[A-Za-z0-9*?._-]{1,64}")
_P = TypeVar("_P")


@dataclass(frozen=True)
class CachePermission:
    """One glob's grants; field names are Attic's claim keys."""

    r: bool = False   # pull
    w: bool = False   # push
    d: bool = False   # delete paths
    cc: bool = False  # create cache
    cr: bool = False  # configure cache
    cq: bool = False  # query cache config
    cd: bool = False  # destroy cache

    def to_claim(self) -> dict[str, int]:
        return {f.name: 1 for f in fields(self) if getattr(self, f.name)}

    @classmethod
    def from_claim(cls, value: Any) -> CachePermission:
        return cls(**_bits(cls, value))

    def merged(self, other: CachePermission) -> CachePermission:
        return CachePermission(**{f.name: getattr(self, f.name) or getattr(other, f.name)
                                  for f in fields(self)})


NO_PERMISSION = CachePermission()


@dataclass(frozen=True)
class WorkspacePermission:
    """One workspace glob's grants, by their claim keys."""

    r: bool = False  # read the state and its history
    w: bool = False  # write (and delete) the state
    l: bool = False  # take and release the lock  # noqa: E741 (the claim's key)
    a: bool = False  # force: lower serials, other lineages, rollback, force-unlock

    def to_claim(self) -> dict[str, int]:
        return {f.name: 1 for f in fields(self) if getattr(self, f.name)}

    @classmethod
    def from_claim(cls, value: Any) -> WorkspacePermission:
        return cls(**_bits(cls, value))

    def merged(self, other: WorkspacePermission) -> WorkspacePermission:
        return WorkspacePermission(**{f.name: getattr(self, f.name) or getattr(other, f.name)
                                      for f in fields(self)})


NO_WORKSPACE_PERMISSION = WorkspacePermission()


def _bits(cls: type[Any], value: Any) -> dict[str, bool]:
    """Each bit is 0/1 or false/true; anything else (``"0"``, 2, null) is refused rather
    than guessed at, so a malformed claim can never grant more than it says."""
    if not isinstance(value, dict):
        raise ValueError("permission entry must be an object")
    known = {f.name for f in fields(cls)}
    bits: dict[str, bool] = {}
    for k, v in value.items():
        if k not in known:
            continue
        if v not in (0, 1) or type(v) not in (int, bool):
            raise ValueError(f"permission {k!r} must be 0, 1, false or true")
        bits[k] = bool(v)
    return bits


def check_glob(pattern: str, kind: str = "cache") -> str:
    if not _GLOB.fullmatch(pattern):
        raise ValueError(f"invalid {kind} pattern {pattern!r}: use letters, digits, . _ - "
                         "and * ?")
    return pattern


def _first_match(globs: tuple[tuple[str, _P], ...], name: str, none: _P) -> _P:
    """The exact name wins, else the first matching glob."""
    for pattern, perm in globs:
        if pattern == name:
            return perm
    for pattern, perm in globs:
        if fnmatch.fnmatchcase(name, pattern):
            return perm
    return none


@dataclass(frozen=True)
class Grants:
    """What a token allows, in claim order: the exact name wins, else the first matching glob."""

    caches: tuple[tuple[str, CachePermission], ...] = ()
    admin: bool = False
    workspaces: tuple[tuple[str, WorkspacePermission], ...] = ()

    def for_cache(self, name: str) -> CachePermission:
        return _first_match(self.caches, name, NO_PERMISSION)

    def for_workspace(self, name: str) -> WorkspacePermission:
        return _first_match(self.workspaces, name, NO_WORKSPACE_PERMISSION)

    def to_claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {ATTIC_CLAIM: {"caches": {p: perm.to_claim()
                                                           for p, perm in self.caches}}}
        ours: dict[str, Any] = {}
        if self.admin:
            ours["admin"] = True
        if self.workspaces:
            ours["workspaces"] = {p: perm.to_claim() for p, perm in self.workspaces}
        if ours:
            claims[FLYWHEEL_CLAIM] = ours
        return claims

    @classmethod
    def from_request(cls, caches: dict[str, dict[str, int]], admin: bool,
                     workspaces: dict[str, dict[str, int]] | None = None) -> Grants:
        """Grants asked for through the API, with every glob checked."""
        return cls(tuple((check_glob(p), CachePermission.from_claim(v))
                         for p, v in caches.items()), admin,
                   tuple((check_glob(p, "workspace"), WorkspacePermission.from_claim(v))
                         for p, v in (workspaces or {}).items()))

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Grants:
        attic = claims.get(ATTIC_CLAIM, {})
        caches = attic.get("caches", {}) if isinstance(attic, dict) else None
        if not isinstance(caches, dict):
            raise ValueError("malformed cache permissions claim")
        ours = claims.get(FLYWHEEL_CLAIM, {})
        if not isinstance(ours, dict) or ours.get("admin", False) not in (True, False):
            raise ValueError("malformed flywheel claim")
        workspaces = ours.get("workspaces", {})
        if not isinstance(workspaces, dict):
            raise ValueError("malformed workspace permissions claim")
        return cls(tuple((str(p), CachePermission.from_claim(v)) for p, v in caches.items()),
                   ours.get("admin") is True,
                   tuple((str(p), WorkspacePermission.from_claim(v))
                         for p, v in workspaces.items()))

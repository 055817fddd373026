"""Attic's permission bits per cache-name glob, and how a token's claim resolves them."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, fields
from typing import Any

ATTIC_CLAIM = "https://jwt.attic.rs/v1"
FLYWHEEL_CLAIM = "https://flywheel.gloriousflywheel.dev/v1"

_GLOB = re.compile(r"[A-Za-z0-9*?._-]{1,64}")


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
        return cls(**bits)

    def merged(self, other: CachePermission) -> CachePermission:
        return CachePermission(**{f.name: getattr(self, f.name) or getattr(other, f.name)
                                  for f in fields(self)})


NO_PERMISSION = CachePermission()


def check_glob(pattern: str) -> str:
    if not _GLOB.fullmatch(pattern):
        raise ValueError(f"invalid cache pattern {pattern!r}: use letters, digits, . _ - and * ?")
    return pattern


@dataclass(frozen=True)
class Grants:
    """What a token allows, in claim order: the exact name wins, else the first matching glob."""

    caches: tuple[tuple[str, CachePermission], ...] = ()
    admin: bool = False

    def for_cache(self, name: str) -> CachePermission:
        for pattern, perm in self.caches:
            if pattern == name:
                return perm
        for pattern, perm in self.caches:
            if fnmatch.fnmatchcase(name, pattern):
                return perm
        return NO_PERMISSION

    def to_claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {ATTIC_CLAIM: {"caches": {p: perm.to_claim()
                                                           for p, perm in self.caches}}}
        if self.admin:
            claims[FLYWHEEL_CLAIM] = {"admin": True}
        return claims

    @classmethod
    def from_request(cls, caches: dict[str, dict[str, int]], admin: bool) -> Grants:
        """Grants asked for through the API, with every glob checked."""
        return cls(tuple((check_glob(p), CachePermission.from_claim(v))
                         for p, v in caches.items()), admin)

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Grants:
        attic = claims.get(ATTIC_CLAIM, {})
        caches = attic.get("caches", {}) if isinstance(attic, dict) else None
        if not isinstance(caches, dict):
            raise ValueError("malformed cache permissions claim")
        ours = claims.get(FLYWHEEL_CLAIM, {})
        if not isinstance(ours, dict) or ours.get("admin", False) not in (True, False):
            raise ValueError("malformed flywheel claim")
        return cls(tuple((str(p), CachePermission.from_claim(v)) for p, v in caches.items()),
                   ours.get("admin") is True)

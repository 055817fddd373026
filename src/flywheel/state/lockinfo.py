"""OpenTofu's lock-info JSON (``ID, Operation, Info, Who, Version, Created, Path``): only the
ID is ours to check; the rest is kept as the locker sent it and handed back to anyone the
lock refuses, so their client can say who holds it."""

from __future__ import annotations

import json
from dataclasses import dataclass

from flywheel.errors import Invalid, TooLarge

MAX_LOCK_INFO_BYTES = 64 << 10
MAX_LOCK_ID_CHARS = 255


@dataclass(frozen=True)
class LockInfo:
    id: str
    raw: str
    who: str | None


def parse_lock_info(body: bytes) -> LockInfo:
    if len(body) > MAX_LOCK_INFO_BYTES:
        raise TooLarge(f"lock info larger than {MAX_LOCK_INFO_BYTES} bytes")
    try:
        info = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Invalid("lock info is not valid JSON") from None
    if not isinstance(info, dict):
        raise Invalid("lock info must be a JSON object")
    lock_id = info.get("ID")
    if not isinstance(lock_id, str) or not 0 < len(lock_id) <= MAX_LOCK_ID_CHARS:
        raise Invalid(f"lock info needs an ID of 1 to {MAX_LOCK_ID_CHARS} characters")
    who = info.get("Who")
    return LockInfo(id=lock_id, raw=body.decode(), who=who if isinstance(who, str) else None)


def check_lock_id(lock_id: str) -> str:
    if not 0 < len(lock_id) <= MAX_LOCK_ID_CHARS:
        raise Invalid(f"a lock ID has 1 to {MAX_LOCK_ID_CHARS} characters")
    return lock_id

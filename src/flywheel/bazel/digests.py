"""SHA-256 digests as REAPI names them: lowercase hex hash plus size in bytes."""

from __future__ import annotations

import re
from dataclasses import dataclass

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
_HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_BLOB_SIZE = 1 << 50


class DigestError(ValueError):
    """A malformed digest; the message is safe to return to the client."""


def check_hash(value: str) -> str:
    if not _HEX64.fullmatch(value):
        raise DigestError(f"invalid SHA-256 hash {value[:80]!r}: expected 64 lowercase hex "
                          "characters")
    return value


@dataclass(frozen=True)
class Digest:
    hash: str
    size: int

    def __post_init__(self) -> None:
        check_hash(self.hash)
        if not 0 <= self.size <= MAX_BLOB_SIZE:
            raise DigestError(f"invalid blob size {self.size}")

    @property
    def is_empty(self) -> bool:
        return self.hash == EMPTY_SHA256 and self.size == 0

    def __str__(self) -> str:
        return f"{self.hash}/{self.size}"


def parse_size(text: str) -> int:
    if not text.isdigit() or len(text) > 16:
        raise DigestError(f"invalid blob size {text[:40]!r}")
    return int(text)

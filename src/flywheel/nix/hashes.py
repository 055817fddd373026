"""Nix hash strings: ``algo:<base32|hex|base64>`` and SRI ``algo-<base64>``."""

import base64
import binascii
import string
from dataclasses import dataclass
from typing import Self

from flywheel.nix import base32

DIGEST_SIZES: dict[str, int] = {"md5": 16, "sha1": 20, "sha256": 32, "sha512": 64}

_HEX_DIGITS = frozenset(string.hexdigits)


def _b64_length(n_bytes: int) -> int:
    return (n_bytes + 2) // 3 * 4


def b64decode_canonical(s: str) -> bytes:
    """Decode padded standard base64, rejecting every non-canonical spelling.

    Python's decoder ignores non-zero bits in the final character, which would let
    several strings name the same bytes; re-encoding pins the one Nix writes.
    """
    try:
        data = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"invalid base64 {s!r}") from None
    if base64.b64encode(data).decode("ascii") != s:
        raise ValueError(f"non-canonical base64 {s!r}")
    return data


@dataclass(frozen=True)
class NixHash:
    algo: str
    digest: bytes

    def __post_init__(self) -> None:
        size = DIGEST_SIZES.get(self.algo)
        if size is None:
            raise ValueError(f"unsupported hash algorithm {self.algo!r}")
        if len(self.digest) != size:
            raise ValueError(f"{self.algo} digest must be {size} bytes, got {len(self.digest)}")

    @classmethod
    def parse(cls, s: str) -> Self:
        """Parse ``algo:<digest>`` (base32, hex or base64, told apart by length as Nix
        does) or SRI ``algo-<base64>``."""
        if ":" in s:
            algo, rest = s.split(":", 1)
            sri = False
        elif "-" in s:
            algo, rest = s.split("-", 1)
            sri = True
        else:
            raise ValueError(f"hash {s!r} has no 'algo:' or SRI 'algo-' prefix")
        size = DIGEST_SIZES.get(algo)
        if size is None:
            raise ValueError(f"hash {s!r} has unsupported algorithm {algo!r}")
        try:
            if sri:
                if len(rest) != _b64_length(size):
                    raise ValueError(f"SRI digest must be {_b64_length(size)} base64 characters")
                return cls(algo, b64decode_canonical(rest))
            if len(rest) == size * 2:
                if not _HEX_DIGITS.issuperset(rest):
                    raise ValueError("invalid hex digit")
                return cls(algo, bytes.fromhex(rest))
            if len(rest) == base32.encoded_length(size):
                return cls(algo, base32.decode(rest))
            if len(rest) == _b64_length(size):
                return cls(algo, b64decode_canonical(rest))
        except ValueError as e:
            raise ValueError(f"invalid {algo} hash {s!r}: {e}") from None
        raise ValueError(f"invalid {algo} hash {s!r}: digest has wrong length {len(rest)}")

    def to_base32(self) -> str:
        return f"{self.algo}:{base32.encode(self.digest)}"

    def to_sri(self) -> str:
        return f"{self.algo}-{base64.b64encode(self.digest).decode('ascii')}"

    def hex(self) -> str:
        return self.digest.hex()


def sha256_base32(digest: bytes) -> str:
    return NixHash("sha256", digest).to_base32()

"""Ed25519 binary-cache keys and signatures in Nix's ``name:base64`` format."""

import base64
from dataclasses import dataclass
from typing import Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from flywheel.nix.hashes import b64decode_canonical

SEED_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


def _check_name(name: str) -> None:
    # The name is everything before the first ':' of a key or signature, so a
    # name containing one could never be read back.
    if not name or ":" in name or not name.isprintable() or any(c.isspace() for c in name):
        raise ValueError(f"invalid key name {name!r}: must be non-empty, printable, without ':'")


def _split(s: str, what: str) -> tuple[str, bytes]:
    # Key files are usually read straight from disk, often with a trailing newline.
    name, sep, data = s.strip().partition(":")
    if not sep:
        raise ValueError(f"{what} is not 'name:base64'")
    _check_name(name)
    try:
        return name, b64decode_canonical(data)
    except ValueError as e:
        raise ValueError(f"{what} {name!r}: {e}") from None


def _public_bytes(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()


@dataclass(frozen=True)
class PublicKey:
    name: str
    key: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.key) != PUBLIC_KEY_BYTES:
            raise ValueError(f"public key must be {PUBLIC_KEY_BYTES} bytes, got {len(self.key)}")

    @classmethod
    def parse(cls, s: str) -> Self:
        return cls(*_split(s, "public key"))

    def to_string(self) -> str:
        return f"{self.name}:{base64.b64encode(self.key).decode('ascii')}"

    def verify(self, fingerprint: str, sig: str) -> bool:
        name, sep, data = sig.partition(":")
        if not sep or name != self.name:
            return False
        try:
            raw = b64decode_canonical(data)
            if len(raw) != SIGNATURE_BYTES:
                return False
            Ed25519PublicKey.from_public_bytes(self.key).verify(raw, fingerprint.encode("utf-8"))
        except (ValueError, InvalidSignature):
            return False
        return True


@dataclass(frozen=True)
class SecretKey:
    """A signing key; Nix stores it as name:base64(seed || public key)."""

    name: str
    seed: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.seed) != SEED_BYTES:
            raise ValueError(f"secret key seed must be {SEED_BYTES} bytes, got {len(self.seed)}")

    @classmethod
    def parse(cls, s: str) -> Self:
        name, raw = _split(s, "secret key")
        if len(raw) != SEED_BYTES + PUBLIC_KEY_BYTES:
            raise ValueError(
                f"secret key {name!r} must be {SEED_BYTES + PUBLIC_KEY_BYTES} bytes, got {len(raw)}"
            )
        seed, public = raw[:SEED_BYTES], raw[SEED_BYTES:]
        # libsodium signs with whatever public half the file carries, so a
        # mismatched one would yield signatures no client could verify.
        if _public_bytes(seed) != public:
            raise ValueError(f"secret key {name!r}: public half does not match the seed")
        return cls(name, seed)

    @classmethod
    def generate(cls, name: str) -> Self:
        seed = Ed25519PrivateKey.generate().private_bytes_raw()
        return cls(name, seed)

    def to_string(self) -> str:
        raw = self.seed + _public_bytes(self.seed)
        return f"{self.name}:{base64.b64encode(raw).decode('ascii')}"

    def public_key(self) -> PublicKey:
        return PublicKey(self.name, _public_bytes(self.seed))

    def sign(self, fingerprint: str) -> str:
        sig = Ed25519PrivateKey.from_private_bytes(self.seed).sign(fingerprint.encode("utf-8"))
        return f"{self.name}:{base64.b64encode(sig).decode('ascii')}"

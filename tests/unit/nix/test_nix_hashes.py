import base64
import hashlib

import pytest

from flywheel.nix import base32
from flywheel.nix.hashes import NixHash, sha256_base32

# Digests of b"abc" as nix-hash and `nix hash to-sri` print them.
VECTORS = {
    "md5": ("3jgzhjhz9zjvbb0kyj7jc500ch", "md5-kAFQmDzST7DWlj99KOF/cg=="),
    "sha1": ("kpcd173cq987hw957sx6m0868wv3x6d9", "sha1-qZk+NkcGgWq6PiVxeFDCbJzQ2J0="),
    "sha256": (
        "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
        "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
    ),
    "sha512": (
        "2gs8k559z4rlahfx0y688s49m2vvszylcikrfinm30ly9rak69236nkam5ydvly1"
        "ai7xac99vxfc4ii84hawjbk876blyk1jfhkbbyx",
        "sha512-3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/uu9RU1EI2Q86A4q"
        "mslPpUyknw==",
    ),
}


@pytest.mark.parametrize("algo", sorted(VECTORS))
def test_parse_every_form(algo: str) -> None:
    digest = hashlib.new(algo, b"abc").digest()
    b32, sri = VECTORS[algo]
    b64 = base64.b64encode(digest).decode()
    forms = [
        f"{algo}:{b32}",
        f"{algo}:{digest.hex()}",
        f"{algo}:{digest.hex().upper()}",
        f"{algo}:{b64}",
        sri,
    ]
    for form in forms:
        h = NixHash.parse(form)
        assert h == NixHash(algo, digest), form
        assert h.to_base32() == f"{algo}:{b32}"
        assert h.to_sri() == sri
        assert h.hex() == digest.hex()


def test_sha256_base32() -> None:
    digest = hashlib.sha256(b"abc").digest()
    assert sha256_base32(digest) == "sha256:" + VECTORS["sha256"][0]


def test_sha256_base32_rejects_wrong_size() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        sha256_base32(b"\0" * 20)


def test_is_hashable_and_frozen() -> None:
    h = NixHash.parse("sha256-" + VECTORS["sha256"][1].split("-", 1)[1])
    assert {h: 1}[NixHash("sha256", h.digest)] == 1
    with pytest.raises(AttributeError):
        h.algo = "md5"  # type: ignore[misc]


SHA256 = hashlib.sha256(b"abc").digest()
B32 = base32.encode(SHA256)
HEX = SHA256.hex()
B64 = base64.b64encode(SHA256).decode()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "prefix"),
        (B32, "prefix"),
        ("sha384:" + B32, "unsupported algorithm 'sha384'"),
        ("SHA256:" + B32, "unsupported algorithm"),
        (":" + B32, "unsupported algorithm"),
        ("sha256:", "wrong length 0"),
        ("sha256:" + B32[:-1], "wrong length 51"),
        ("sha256:" + B32 + "0", "wrong length 53"),
        ("sha256:" + HEX[:-1] + "g", "invalid hex"),
        ("sha256:" + HEX[:-2] + " 0", "invalid hex"),
        ("sha256:e" + B32[1:], "base32 character"),
        ("sha256:z" + B32[1:], "leftover bits"),
        ("sha256:" + B64[:-1] + "!", "invalid base64"),
        ("sha256:" + B64[:-2] + "1=", "non-canonical base64"),
        ("sha256-" + HEX, "SRI digest must be 44"),
        ("sha256-" + B32, "SRI digest must be 44"),
        ("sha256-" + B64.rstrip("="), "SRI digest must be 44"),
        ("sha256-" + B64[:-2] + "1=", "non-canonical"),
        ("md5:" + B32, "wrong length"),
        ("sha256-" + B64 + ":", "unsupported algorithm"),
    ],
)
def test_parse_errors(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        NixHash.parse(text)


@pytest.mark.parametrize(
    ("algo", "digest", "match"),
    [("sha256", b"\0" * 31, "32 bytes"), ("blake3", b"\0" * 32, "unsupported"), ("md5", b"", "16")],
)
def test_constructor_validates(algo: str, digest: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        NixHash(algo, digest)

import base64
import json
from pathlib import Path

import pytest

from flywheel.nix import base32

FIXTURES = Path(__file__).parents[2] / "fixtures" / "nix"

# From nix-hash --type ALGO --to-base32 of the digests of b"abc" and b"".
KNOWN = [
    ("900150983cd24fb0d6963f7d28e17f72", "3jgzhjhz9zjvbb0kyj7jc500ch"),
    ("a9993e364706816aba3e25717850c26c9cd0d89d", "kpcd173cq987hw957sx6m0868wv3x6d9"),
    (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
    ),
    (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
    ),
    (
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "2gs8k559z4rlahfx0y688s49m2vvszylcikrfinm30ly9rak69236nkam5ydvly1"
        "ai7xac99vxfc4ii84hawjbk876blyk1jfhkbbyx",
    ),
]


def _narinfo_fields(name: str) -> dict[str, str]:
    text = (FIXTURES / name).read_text()
    return dict(line.split(": ", 1) for line in text.splitlines())


@pytest.mark.parametrize(("hex_digest", "b32"), KNOWN)
def test_known_vectors(hex_digest: str, b32: str) -> None:
    digest = bytes.fromhex(hex_digest)
    assert base32.encode(digest) == b32
    assert base32.decode(b32) == digest
    assert base32.encoded_length(len(digest)) == len(b32)


@pytest.mark.parametrize("which", ["dep", "top"])
def test_path_info_sri_matches_narinfo_base32(which: str) -> None:
    infos = json.loads((FIXTURES / "path-info.json").read_text())
    (info,) = [i for i in infos if i["path"].endswith(f"-flywheel-fixture-{which}")]
    fields = _narinfo_fields(f"{which}.xz.narinfo")
    for sri_key, narinfo_key in [("narHash", "NarHash"), ("downloadHash", "FileHash")]:
        algo, b64 = info[sri_key].split("-", 1)
        assert algo == "sha256"
        assert f"sha256:{base32.encode(base64.b64decode(b64))}" == fields[narinfo_key]
        assert base64.b64encode(base32.decode(fields[narinfo_key][7:])).decode() == b64


def test_empty() -> None:
    assert base32.encode(b"") == ""
    assert base32.decode("") == b""
    assert base32.encoded_length(0) == 0


@pytest.mark.parametrize(("n", "length"), [(1, 2), (2, 4), (3, 5), (4, 7), (5, 8), (20, 32)])
def test_encoded_length(n: int, length: int) -> None:
    assert base32.encoded_length(n) == length
    assert len(base32.encode(bytes(n))) == length


def test_encoded_length_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        base32.encoded_length(-1)


def test_bit_order() -> None:
    # The last character holds the low bits of the first byte.
    assert base32.encode(b"\x01") == "01"
    assert base32.encode(b"\x1f") == "0z"
    assert base32.encode(b"\xe0") == "70"
    assert base32.encode(b"\x00\x01") == "0080"


def test_alphabet() -> None:
    assert len(base32.ALPHABET) == 32
    assert not set("eout") & set(base32.ALPHABET)


@pytest.mark.parametrize("bad", ["e0", "0o", "u0", "t0", "0A", "0-", "0 ", "é0"])
def test_decode_rejects_bad_characters(bad: str) -> None:
    with pytest.raises(ValueError, match="character"):
        base32.decode(bad)


@pytest.mark.parametrize("length", [1, 3, 6, 51, 54])
def test_decode_rejects_bad_length(length: int) -> None:
    with pytest.raises(ValueError, match="length"):
        base32.decode("0" * length)


@pytest.mark.parametrize("bad", ["80", "z0", "2" + "0" * 51])
def test_decode_rejects_leftover_bits(bad: str) -> None:
    with pytest.raises(ValueError, match="leftover"):
        base32.decode(bad)

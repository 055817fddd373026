import base64
from collections.abc import Callable
from pathlib import Path

import pytest

from flywheel.nix.narinfo import fingerprint, parse
from flywheel.nix.signing import PublicKey, SecretKey

FIXTURES = Path(__file__).parents[2] / "fixtures" / "nix"
SECRET_TEXT = (FIXTURES / "signing-key.sec").read_text()
PUBLIC_TEXT = (FIXTURES / "signing-key.pub").read_text()
SIGNED = ["dep.xz.narinfo", "top.xz.narinfo"]


def test_parse_real_keys() -> None:
    sk = SecretKey.parse(SECRET_TEXT)
    pk = PublicKey.parse(PUBLIC_TEXT)
    assert sk.name == pk.name == "flywheel-test-1"
    assert len(sk.seed) == 32
    assert sk.public_key() == pk
    # nix-store --generate-binary-cache-key writes no trailing newline.
    assert sk.to_string() == SECRET_TEXT
    assert pk.to_string() == PUBLIC_TEXT


def test_parse_tolerates_surrounding_whitespace() -> None:
    assert SecretKey.parse(SECRET_TEXT + "\n") == SecretKey.parse(SECRET_TEXT)
    assert PublicKey.parse(f" {PUBLIC_TEXT}\n") == PublicKey.parse(PUBLIC_TEXT)


@pytest.mark.parametrize("name", SIGNED)
def test_real_nix_signature_verifies(name: str) -> None:
    info = parse((FIXTURES / name).read_bytes())
    (sig,) = info.sigs
    assert PublicKey.parse(PUBLIC_TEXT).verify(fingerprint(info), sig)


@pytest.mark.parametrize("name", SIGNED)
def test_our_signature_equals_nix(name: str) -> None:
    info = parse((FIXTURES / name).read_bytes())
    assert SecretKey.parse(SECRET_TEXT).sign(fingerprint(info)) == info.sigs[0]


def _sig_parts() -> tuple[PublicKey, str, str]:
    info = parse((FIXTURES / "top.xz.narinfo").read_bytes())
    return PublicKey.parse(PUBLIC_TEXT), fingerprint(info), info.sigs[0]


def test_verify_rejects_other_fingerprint() -> None:
    pk, fp, sig = _sig_parts()
    assert not pk.verify(fp.replace(";616;", ";617;"), sig)
    assert not pk.verify(fp + ",", sig)


def test_verify_rejects_other_key_name() -> None:
    pk, fp, sig = _sig_parts()
    assert not PublicKey("other", pk.key).verify(fp, sig)
    assert not pk.verify(fp, "other" + sig[sig.index(":") :])


def test_verify_rejects_other_key() -> None:
    _, fp, sig = _sig_parts()
    other = SecretKey.generate("flywheel-test-1").public_key()
    assert not other.verify(fp, sig)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: "",
        lambda s: ":",
        lambda s: "flywheel-test-1",
        lambda s: "flywheel-test-1:",
        lambda s: "flywheel-test-1:!!!!",
        lambda s: s[:-4],
        lambda s: s[:30] + ("B" if s[30] != "B" else "C") + s[31:],
        lambda s: s + "AAAA",
        lambda s: s.replace("==", ""),
        lambda s: s[:-3] + "B==",
        lambda s: "flywheel-test-1:" + base64.b64encode(bytes(64)).decode(),
        lambda s: "flywheel-test-1:" + base64.b64encode(bytes(32)).decode(),
        lambda s: s + "\n",
        lambda s: s + ":x",
    ],
)
def test_verify_never_raises_on_malformed(mangle: Callable[[str], str]) -> None:
    pk, fp, sig = _sig_parts()
    assert pk.verify(fp, mangle(sig)) is False


def test_verify_with_non_utf8_fingerprint_is_false() -> None:
    pk, _, sig = _sig_parts()
    assert pk.verify("\ud800", sig) is False


def test_generate_sign_verify_round_trip() -> None:
    sk = SecretKey.generate("cache.example.org-1")
    again = SecretKey.parse(sk.to_string())
    assert again == sk
    pk = PublicKey.parse(sk.public_key().to_string())
    sig = sk.sign("1;/nix/store/x;sha256:y;1;")
    assert sig.startswith("cache.example.org-1:")
    assert pk.verify("1;/nix/store/x;sha256:y;1;", sig)
    assert sk.sign("1;/nix/store/x;sha256:y;1;") == sig


def _secret_with(name: str = "k", raw: bytes | None = None) -> str:
    sk = SecretKey.parse(SECRET_TEXT)
    if raw is None:
        raw = sk.seed + sk.public_key().key
    return f"{name}:{base64.b64encode(raw).decode()}"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "not 'name:base64'"),
        ("nocolon", "not 'name:base64'"),
        (":" + SECRET_TEXT.split(":", 1)[1], "invalid key name"),
        ("a b:" + SECRET_TEXT.split(":", 1)[1], "invalid key name"),
        ("k:", "64 bytes, got 0"),
        ("k:!!!!", "invalid base64"),
        ("k:" + SECRET_TEXT.split(":", 1)[1].rstrip("="), "invalid base64"),
        (_secret_with(raw=bytes(32)), "64 bytes, got 32"),
        (_secret_with(raw=bytes(96)), "64 bytes, got 96"),
        (
            _secret_with(raw=SecretKey.parse(SECRET_TEXT).seed + bytes(32)),
            "public half does not match",
        ),
    ],
)
def test_secret_key_parse_errors(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SecretKey.parse(text)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "not 'name:base64'"),
        (PUBLIC_TEXT.split(":", 1)[1], "not 'name:base64'"),
        (":" + PUBLIC_TEXT.split(":", 1)[1], "invalid key name"),
        ("k:" + base64.b64encode(bytes(31)).decode(), "32 bytes, got 31"),
        ("k:" + base64.b64encode(bytes(64)).decode(), "32 bytes, got 64"),
        ("k:abc", "invalid base64"),
    ],
)
def test_public_key_parse_errors(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PublicKey.parse(text)


@pytest.mark.parametrize("name", ["", "a:b", "a b", "a\nb"])
def test_constructors_validate_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid key name"):
        SecretKey(name, bytes(32))
    with pytest.raises(ValueError, match="invalid key name"):
        PublicKey(name, bytes(32))
    with pytest.raises(ValueError, match="invalid key name"):
        SecretKey.generate(name)


def test_constructors_validate_lengths() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SecretKey("k", bytes(64))
    with pytest.raises(ValueError, match="32 bytes"):
        PublicKey("k", bytes(33))

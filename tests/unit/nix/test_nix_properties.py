import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TypeAlias

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flywheel.nix import base32
from flywheel.nix.hashes import NixHash
from flywheel.nix.nar import NarError, NarValidator, dump_path
from flywheel.nix.narinfo import NarInfo, NarInfoError, parse, render
from flywheel.nix.signing import PublicKey, SecretKey
from flywheel.nix.storepath import StorePath

FIXTURES = Path(__file__).parents[2] / "fixtures" / "nix"
NARINFO_TEXTS = [p.read_text() for p in sorted(FIXTURES.glob("*.narinfo"))]
NARS = [p.read_bytes() for p in sorted(FIXTURES.glob("*.nar"))]
NIX_STORE = shutil.which("nix-store")
KEY = SecretKey.parse((FIXTURES / "signing-key.sec").read_text())


# base32 and hashes


@given(st.binary(max_size=300))
def test_base32_round_trip(data: bytes) -> None:
    encoded = base32.encode(data)
    assert len(encoded) == base32.encoded_length(len(data))
    assert set(encoded) <= set(base32.ALPHABET)
    assert base32.decode(encoded) == data


@given(st.text(alphabet=base32.ALPHABET + "eotuA!", max_size=80))
def test_base32_decode_is_exact_inverse_or_value_error(s: str) -> None:
    try:
        data = base32.decode(s)
    except ValueError:
        return
    assert base32.encode(data) == s


@given(st.sampled_from(["md5", "sha1", "sha256", "sha512"]), st.data())
def test_hash_forms_round_trip(algo: str, data: st.DataObject) -> None:
    size = {"md5": 16, "sha1": 20, "sha256": 32, "sha512": 64}[algo]
    h = NixHash(algo, data.draw(st.binary(min_size=size, max_size=size)))
    for form in (h.to_base32(), h.to_sri(), f"{algo}:{h.hex()}"):
        assert NixHash.parse(form) == h


@given(st.text(max_size=120))
def test_hash_parse_raises_only_value_error(s: str) -> None:
    with contextlib.suppress(ValueError):
        NixHash.parse(s)


# narinfo

hash_parts = st.text(alphabet=base32.ALPHABET, min_size=32, max_size=32)
names = st.from_regex(r"[A-Za-z0-9+\-_?=][A-Za-z0-9+\-._?=]{0,40}", fullmatch=True)
store_paths = st.builds(StorePath, hash_parts, names)
sha256s = st.binary(min_size=32, max_size=32).map(lambda d: NixHash("sha256", d))
uint64s = st.integers(0, 2**64 - 1)
sigs = st.from_regex(r"[a-z0-9.\-]{1,20}:[A-Za-z0-9+/]{86}==", fullmatch=True)
cas = st.one_of(
    sha256s.map(lambda h: f"text:{h.to_base32()}"),
    sha256s.map(lambda h: f"fixed:r:{h.to_base32()}"),
    st.binary(min_size=20, max_size=20).map(lambda d: f"fixed:sha1:{d.hex()}"),
)
narinfos = st.builds(
    NarInfo,
    store_path=store_paths,
    url=st.from_regex(r"nar/[0-9a-z]{1,52}\.nar(\.xz|\.zst|\.bz2)?", fullmatch=True),
    compression=st.sampled_from(["none", "xz", "bzip2", "zstd", "br"]),
    nar_hash=sha256s,
    nar_size=st.integers(1, 2**64 - 1),
    references=st.lists(store_paths, max_size=5),
    file_hash=st.none() | sha256s,
    file_size=st.none() | uint64s,
    deriver=st.none() | st.builds(StorePath, hash_parts, names.map(lambda n: n + ".drv")),
    system=st.none() | st.sampled_from(["x86_64-linux", "aarch64-darwin", "i686-linux"]),
    sigs=st.lists(sigs, max_size=3),
    ca=st.none() | cas,
)


@given(narinfos, st.sampled_from(["/nix/store", "/var/lib/x/store"]))
def test_narinfo_render_parse_round_trip(info: NarInfo, store_dir: str) -> None:
    text = render(info, store_dir)
    assert text.endswith("\n")
    parsed = parse(text, store_dir)
    assert parsed == info
    assert render(parsed, store_dir) == text
    assert parse(text.encode(), store_dir) == info


def _parse_or_narinfo_error(text: str | bytes) -> None:
    try:
        info = parse(text)
    except NarInfoError:
        return
    # Whatever is accepted must survive a round trip.
    assert parse(render(info)) == info


@given(st.text(max_size=2000))
def test_narinfo_parse_arbitrary_text(text: str) -> None:
    _parse_or_narinfo_error(text)


@given(st.binary(max_size=2000))
def test_narinfo_parse_arbitrary_bytes(data: bytes) -> None:
    _parse_or_narinfo_error(data)


KEYS = ["StorePath", "URL", "Compression", "FileHash", "FileSize", "NarHash", "NarSize"]
KEYS += ["References", "Deriver", "System", "Sig", "CA", "Other"]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(KEYS),
            st.one_of(st.text(max_size=80), st.sampled_from(NARINFO_TEXTS[0].splitlines())),
        ),
        max_size=15,
    )
)
def test_narinfo_parse_structured_garbage(fields: list[tuple[str, str]]) -> None:
    _parse_or_narinfo_error("".join(f"{k}: {v}\n" for k, v in fields))


@given(st.sampled_from(NARINFO_TEXTS), st.data())
def test_narinfo_parse_mutated_real_narinfo(text: str, data: st.DataObject) -> None:
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 3)))
        text = text[:i] + data.draw(st.text(max_size=3)) + text[j:]
    _parse_or_narinfo_error(text)


# signing


@given(st.text(max_size=200))
def test_sign_verify_round_trip(fingerprint: str) -> None:
    try:
        fingerprint.encode("utf-8")
    except UnicodeEncodeError:
        return
    sig = KEY.sign(fingerprint)
    assert KEY.public_key().verify(fingerprint, sig)


@given(st.text(max_size=120))
def test_verify_arbitrary_sig_is_false(sig: str) -> None:
    assert PublicKey.parse((FIXTURES / "signing-key.pub").read_text()).verify("x", sig) is False


# NAR


def _validate_chunked(data: bytes, chunk: int) -> None:
    v = NarValidator()
    for i in range(0, len(data), chunk):
        v.feed(data[i : i + chunk])
    v.finish()


@given(st.binary(max_size=600), st.integers(1, 64))
def test_validator_random_bytes_raise_only_nar_error(data: bytes, chunk: int) -> None:
    with pytest.raises(NarError):
        _validate_chunked(data, chunk)


@given(st.binary(max_size=600), st.integers(1, 64))
def test_validator_random_bytes_after_magic_raise_only_nar_error(data: bytes, chunk: int) -> None:
    with contextlib.suppress(NarError):
        _validate_chunked(NARS[0][:24] + data, chunk)


@given(st.sampled_from(NARS), st.data(), st.integers(1, 100))
def test_validator_mutated_real_nars(nar: bytes, data: st.DataObject, chunk: int) -> None:
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(nar)))
        j = data.draw(st.integers(i, min(len(nar), i + 9)))
        nar = nar[:i] + data.draw(st.binary(max_size=9)) + nar[j:]
    with contextlib.suppress(NarError):
        _validate_chunked(nar, chunk)


# A regular file is (contents, executable), a symlink its target, a directory a dict.
Tree: TypeAlias = "tuple[bytes, bool] | bytes | dict[bytes, Tree]"

file_names = st.binary(min_size=1, max_size=12).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")
)
leaves: st.SearchStrategy[Tree] = st.one_of(
    st.tuples(st.binary(max_size=40), st.booleans()),
    st.binary(min_size=1, max_size=30).filter(lambda b: b"\0" not in b),
)
trees: st.SearchStrategy[Tree] = st.recursive(
    leaves, lambda children: st.dictionaries(file_names, children, max_size=4), max_leaves=12
)


def _write(path: bytes, tree: Tree) -> None:
    if isinstance(tree, tuple):
        contents, executable = tree
        with open(path, "wb") as f:
            f.write(contents)
        os.chmod(path, 0o755 if executable else 0o644)
    elif isinstance(tree, bytes):
        os.symlink(tree, path)
    else:
        os.mkdir(path)
        for name, child in tree.items():
            _write(path + b"/" + name, child)


TREE_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@TREE_SETTINGS
@given(trees, st.integers(1, 50))
def test_dump_path_output_validates(tree: Tree, chunk: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = os.fsencode(tmp) + b"/root"
        _write(root, tree)
        _validate_chunked(b"".join(dump_path(os.fsdecode(root))), chunk)


@pytest.mark.nix
@pytest.mark.skipif(NIX_STORE is None, reason="nix-store is not installed")
@TREE_SETTINGS
@given(trees)
def test_dump_path_equals_nix_store_dump(tree: Tree) -> None:
    assert NIX_STORE is not None
    with tempfile.TemporaryDirectory() as tmp:
        root = os.fsencode(tmp) + b"/root"
        _write(root, tree)
        expected = subprocess.run([NIX_STORE, "--dump", root], check=True, capture_output=True)
        assert b"".join(dump_path(os.fsdecode(root))) == expected.stdout

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from flywheel.nix.hashes import NixHash
from flywheel.nix.narinfo import (
    MAX_NARINFO_BYTES,
    NarInfo,
    NarInfoError,
    fingerprint,
    parse,
    render,
)
from flywheel.nix.storepath import parse_base_name, parse_path

FIXTURES = Path(__file__).parents[2] / "fixtures" / "nix"
NARINFOS = sorted(p.name for p in FIXTURES.glob("*.narinfo"))
TOP = (FIXTURES / "top.xz.narinfo").read_text()


def _path_info(path: str) -> dict[str, Any]:
    infos: list[dict[str, Any]] = json.loads((FIXTURES / "path-info.json").read_text())
    (info,) = [i for i in infos if i["path"] == path]
    return info


def _sri(h: NixHash) -> str:
    return h.to_sri()


def _replace(text: str, key: str, value: str | None) -> str:
    """Set (or with None drop) the line of ``key``."""
    out = []
    for line in text.splitlines(keepends=True):
        if line.startswith(key + ": "):
            if value is not None:
                out.append(f"{key}: {value}\n")
        else:
            out.append(line)
    return "".join(out)


def test_fixture_set() -> None:
    assert NARINFOS == [
        "ca.none.narinfo",
        "dep.none.narinfo",
        "dep.xz.narinfo",
        "top.none.narinfo",
        "top.xz.narinfo",
    ]


@pytest.mark.parametrize("name", NARINFOS)
def test_render_reproduces_nix_byte_for_byte(name: str) -> None:
    raw = (FIXTURES / name).read_bytes()
    info = parse(raw)
    assert render(info).encode() == raw
    assert parse(raw.decode()) == info
    assert parse(render(info)) == info


@pytest.mark.parametrize("name", ["dep.xz.narinfo", "top.xz.narinfo"])
def test_fields_agree_with_path_info(name: str) -> None:
    info = parse((FIXTURES / name).read_bytes())
    pi = _path_info(info.store_path.path())
    assert info.url == pi["url"]
    assert info.compression == "xz"
    assert _sri(info.nar_hash) == pi["narHash"]
    assert info.nar_size == pi["narSize"]
    assert info.file_hash is not None and _sri(info.file_hash) == pi["downloadHash"]
    assert info.file_size == pi["downloadSize"]
    assert [r.path() for r in info.references] == pi["references"]
    assert info.deriver is not None and info.deriver.path() == pi["deriver"]
    assert info.sigs == pi["signatures"]
    assert info.system is None
    assert info.ca is None


def test_ca_fixture() -> None:
    info = parse((FIXTURES / "ca.none.narinfo").read_bytes())
    assert info.deriver is None
    assert info.references == []
    assert info.ca == f"fixed:r:{info.nar_hash.to_base32()}"
    assert info.sigs == []


def test_exact_text_nix_writes_for_no_references() -> None:
    raw = (FIXTURES / "dep.none.narinfo").read_text()
    assert "\nReferences: \n" in raw
    assert render(parse(raw)) == raw


def test_fingerprint_of_real_narinfo() -> None:
    info = parse(TOP)
    pi = _path_info(info.store_path.path())
    assert fingerprint(info) == (
        f"1;{pi['path']};sha256:1afs3bynzs19vfk77n5ijvn655wqgl8dippwdsir614jr9874xpw;616;"
        + ",".join(pi["references"])
    )


def test_fingerprint_sorts_references_and_uses_store_dir() -> None:
    a = parse_base_name("00000000000000000000000000000000-b")
    b = parse_base_name("11111111111111111111111111111111-a")
    info = parse(TOP)
    info.references = [b, a, info.store_path]
    fp = fingerprint(info, "/s")
    assert fp.endswith(f";/s/{a.base_name},/s/{b.base_name},/s/{info.store_path.base_name}")
    assert fp.startswith(f"1;/s/{info.store_path.base_name};")


def test_other_store_dir() -> None:
    text = TOP.replace("StorePath: /nix/store/", "StorePath: /var/lib/store/")
    info = parse(text, "/var/lib/store")
    assert render(info, "/var/lib/store") == text
    assert render(info) == TOP
    with pytest.raises(NarInfoError, match="not in the Nix store"):
        parse(TOP, "/var/lib/store")


def test_compression_defaults_to_bzip2() -> None:
    assert parse(_replace(TOP, "Compression", None)).compression == "bzip2"


def test_unknown_deriver() -> None:
    assert parse(_replace(TOP, "Deriver", "unknown-deriver")).deriver is None
    assert parse(_replace(TOP, "Deriver", None)).deriver is None


def test_optional_fields_absent() -> None:
    text = TOP
    for key in ("Compression", "FileHash", "FileSize", "References", "Deriver", "Sig"):
        text = _replace(text, key, None)
    info = parse(text)
    assert info.file_hash is None
    assert info.file_size is None
    assert info.references == []
    assert info.sigs == []
    assert "References: \n" in render(info)


def test_system_sigs_and_unknown_keys() -> None:
    text = TOP + "System: x86_64-linux\nSig: other-key:AAAA\nFuture: whatever\nFuture: again\n"
    info = parse(text)
    assert info.system == "x86_64-linux"
    assert info.sigs[1:] == ["other-key:AAAA"]
    assert parse(render(info)) == info


def test_accepts_sri_and_hex_hashes() -> None:
    info = parse(TOP)
    text = _replace(TOP, "NarHash", info.nar_hash.to_sri())
    assert info.file_hash is not None
    text = _replace(text, "FileHash", "sha256:" + info.file_hash.hex())
    assert parse(text) == info


def test_duplicate_sig_lines_are_kept() -> None:
    sig = parse(TOP).sigs[0]
    assert parse(TOP + f"Sig: {sig}\n").sigs == [sig, sig]


def test_size_limit() -> None:
    padding = "X-Pad: " + "a" * (MAX_NARINFO_BYTES - len(TOP) - 8) + "\n"
    text = TOP + padding
    assert len(text.encode()) == MAX_NARINFO_BYTES
    parse(text)
    parse(text.encode())
    for too_big in (text + "a", text.encode() + b"a"):
        with pytest.raises(NarInfoError, match="larger than"):
            parse(too_big)
    # Multi-byte characters count by their encoded size.
    with pytest.raises(NarInfoError, match="larger than"):
        parse(TOP + "X-Pad: " + "\u00e9" * (MAX_NARINFO_BYTES // 2) + "\n")


def _bad(key: str, value: str | None) -> str:
    return _replace(TOP, key, value)


REFS = parse(TOP).references[0].base_name
REJECTED: list[tuple[str | bytes, str]] = [
    ("", "empty"),
    (TOP.encode()[:-1], "newline"),
    (TOP.encode() + b"\xff\n", "UTF-8"),
    ("\ud800" + TOP, "UTF-8"),
    (TOP + "\n", "not 'Key: value'"),
    (TOP + "NoColon\n", "not 'Key: value'"),
    (TOP + "Key:value\n", "not 'Key: value'"),
    (TOP + ": value\n", "not 'Key: value'"),
    (TOP.replace("\n", "\r\n"), "control character"),
    (TOP + "X: a\tb\n", "control character"),
    (TOP + "X: \x00\n", "control character"),
    (TOP + "X: \x85\n", "control character"),
    (_bad("StorePath", None), "lacks StorePath"),
    (_bad("URL", None), "lacks URL"),
    (_bad("NarHash", None), "lacks NarHash"),
    (_bad("NarSize", None), "lacks NarSize"),
    ("Foo: bar\n", "lacks StorePath, URL, NarHash, NarSize"),
    (_bad("NarSize", "-1"), "NarSize '-1'"),
    (_bad("NarSize", "+616"), "NarSize"),
    (_bad("NarSize", "616 "), "NarSize"),
    (_bad("NarSize", " 616"), "NarSize"),
    (_bad("NarSize", "6_16"), "NarSize"),
    (_bad("NarSize", "0616"), "NarSize"),
    (_bad("NarSize", "\u0666"), "NarSize"),
    (_bad("NarSize", "616.0"), "NarSize"),
    (_bad("NarSize", ""), "NarSize"),
    (_bad("NarSize", "0"), "NarSize 0 is out of range"),
    (_bad("NarSize", str(2**64)), "out of range"),
    (_bad("FileSize", "-5"), "FileSize"),
    (_bad("FileSize", "x"), "FileSize"),
    (_bad("FileSize", str(2**64)), "out of range"),
    (_bad("NarHash", "sha256:xyz"), "NarHash"),
    (_bad("NarHash", "1afs3bynzs19vfk77n5ijvn655wqgl8dippwdsir614jr9874xpw"), "NarHash"),
    (_bad("NarHash", "sha1:" + "0" * 32), "NarHash must be sha256"),
    (_bad("FileHash", "md5:" + "0" * 32), "FileHash must be sha256"),
    (_bad("FileHash", ""), "FileHash"),
    (_bad("StorePath", "/nix/store/foo"), "StorePath"),
    (_bad("StorePath", "/nix/store/" + REFS + "/sub"), "StorePath"),
    (_bad("StorePath", "/gnu/store/" + REFS), "not in the Nix store"),
    (_bad("StorePath", REFS), "not in the Nix store"),
    (_bad("References", REFS + " "), "References"),
    (_bad("References", " " + REFS), "References"),
    (_bad("References", REFS + "  " + REFS), "References"),
    (_bad("References", "/nix/store/" + REFS), "References"),
    (_bad("References", "not-a-store-path"), "References"),
    (_bad("Deriver", "foo.drv"), "Deriver"),
    (_bad("Deriver", ""), "Deriver"),
    (_bad("Compression", ""), "Compression"),
    (_bad("Compression", "x z"), "Compression"),
    (TOP + "System: \n", "System"),
    (TOP + "System: x86 64\n", "System"),
    (TOP + "Sig: \n", "Sig"),
    (TOP + "Sig: nokey\n", "Sig"),
    (TOP + "Sig: :sig\n", "Sig"),
    (TOP + "Sig: key:\n", "Sig"),
    (TOP + "Sig: key:a b\n", "Sig"),
    (TOP + "CA: \n", "CA"),
    (TOP + "CA: foo:sha256:abc\n", "CA"),
    (TOP + "CA: text:sha256:abc\n", "CA"),
    (TOP + "CA: text:sha1:" + "0" * 32 + "\n", "CA"),
    (TOP + "CA: fixed:r:sha256-" + "A" * 43 + "=\n", "CA"),
    (TOP + "CA: fixed:sha384:" + "0" * 96 + "\n", "CA"),
    (_bad("URL", ""), "URL"),
    (_bad("URL", "nar/a b.nar"), "URL"),
    (_bad("URL", "nar/a\u00a0b.nar"), "URL"),
    (_bad("URL", "nar/a\u2028b.nar"), "URL"),
    (_bad("URL", "/nar/x.nar"), "absolute"),
    (_bad("URL", "//evil.example/x.nar"), "absolute"),
    (_bad("URL", "../x.nar"), "'..'"),
    (_bad("URL", "nar/../../x.nar"), "'..'"),
    (_bad("URL", "nar/.."), "'..'"),
    (_bad("URL", "nar/%2e%2E/x.nar"), "'..'"),
    (_bad("URL", "nar/.%2e/x.nar"), "'..'"),
    (_bad("URL", "nar\\..\\x.nar"), "backslash"),
]
for _key in ("StorePath", "URL", "Compression", "FileHash", "FileSize", "NarHash", "NarSize"):
    _line = next(ln for ln in TOP.splitlines() if ln.startswith(_key + ":"))
    REJECTED.append((f"{TOP}{_line}\n", f"duplicate {_key}"))
REJECTED += [
    (TOP + "Deriver: unknown-deriver\n", "duplicate Deriver"),
    (TOP + "References: \n", "duplicate References"),
    (TOP + "System: a\nSystem: a\n", "duplicate System"),
    (TOP + "CA: text:sha256:" + "0" * 52 + "\nCA: text:sha256:" + "0" * 52 + "\n", "duplicate CA"),
]


@pytest.mark.parametrize(("text", "match"), REJECTED)
def test_rejections(text: str | bytes, match: str) -> None:
    with pytest.raises(NarInfoError, match=match):
        parse(text)


@pytest.mark.parametrize(
    "url",
    [
        "nar/x.nar",
        "nar/x.nar.xz",
        "x.nar",
        "nar/a..b.nar",
        "nar/...nar",
        "https://cache.example/nar/x.nar",
        "nar/x.nar?a=../b",
    ],
)
def test_accepted_urls(url: str) -> None:
    assert parse(_bad("URL", url)).url == url


@pytest.mark.parametrize(
    "ca",
    [
        "text:sha256:" + "0" * 52,
        "fixed:sha256:" + "0" * 64,
        "fixed:r:sha1:" + "0" * 32,
        "fixed:md5:" + "0" * 26,
        "fixed:r:sha512:" + base64.b64encode(bytes(64)).decode(),
    ],
)
def test_accepted_ca(ca: str) -> None:
    info = parse(TOP + f"CA: {ca}\n")
    assert info.ca == ca
    assert parse(render(info)) == info


def test_error_type_is_value_error() -> None:
    assert issubclass(NarInfoError, ValueError)


def test_constructor_validates() -> None:
    info = parse(TOP)
    with pytest.raises(NarInfoError, match="URL"):
        NarInfo(info.store_path, "../x", "xz", info.nar_hash, 1, [])
    with pytest.raises(NarInfoError, match="Compression"):
        NarInfo(info.store_path, "x", "a\nb", info.nar_hash, 1, [])
    with pytest.raises(NarInfoError, match="Sig"):
        NarInfo(info.store_path, "x", "xz", info.nar_hash, 1, [], sigs=["a\nb:c"])
    with pytest.raises(NarInfoError, match="NarSize"):
        NarInfo(info.store_path, "x", "xz", info.nar_hash, -1, [])
    minimal = NarInfo(info.store_path, "x", "xz", info.nar_hash, 1, [])
    assert minimal.sigs == []
    assert render(minimal) == (
        f"StorePath: {info.store_path.path()}\nURL: x\nCompression: xz\n"
        f"NarHash: {info.nar_hash.to_base32()}\nNarSize: 1\nReferences: \n"
    )
    assert parse_path(info.store_path.path()) == info.store_path

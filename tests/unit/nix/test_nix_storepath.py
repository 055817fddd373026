import pytest

from flywheel.nix.storepath import (
    HASH_PART_LEN,
    STORE_DIR,
    StorePath,
    is_valid_hash_part,
    parse_base_name,
    parse_path,
)

HASH = "wa190frw2yz61h2baqyr80kjz2k6mjh1"
BASE = f"{HASH}-flywheel-fixture-dep"


def test_parse_path() -> None:
    sp = parse_path(f"/nix/store/{BASE}")
    assert sp == StorePath(HASH, "flywheel-fixture-dep")
    assert sp.base_name == BASE
    assert sp.path() == f"{STORE_DIR}/{BASE}"
    assert sp.path("/other/store") == f"/other/store/{BASE}"
    assert HASH_PART_LEN == 32


def test_parse_path_other_store_dir() -> None:
    assert parse_path(f"/other/store/{BASE}", "/other/store") == parse_base_name(BASE)
    with pytest.raises(ValueError, match="not in the Nix store"):
        parse_path(f"/nix/store/{BASE}", "/other/store")


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "x" * 211,
        "hello-2.12.1",
        "source.drv",
        "A+B-c_d?e=f",
        "-leading-dash",
        "0",
        "foo..bar",
    ],
)
def test_valid_names(name: str) -> None:
    sp = parse_base_name(f"{HASH}-{name}")
    assert sp.name == name
    assert parse_path(sp.path()) == sp


@pytest.mark.parametrize(
    ("path", "match"),
    [
        (f"/nix/store/{BASE}/bin/sh", "illegal character"),
        (f"/nix/store/{BASE}/", "illegal character"),
        (f"/nix/store//{BASE}", "base name"),
        (f"/nix/store/../store/{BASE}", "base name"),
        (f"/nix/storex/{BASE}", "not in the Nix store"),
        (f"nix/store/{BASE}", "not in the Nix store"),
        (BASE, "not in the Nix store"),
        ("/nix/store", "not in the Nix store"),
        ("/nix/store/", "base name"),
    ],
)
def test_parse_path_errors(path: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_path(path)


@pytest.mark.parametrize(
    ("base", "match"),
    [
        ("", "base name"),
        (HASH, "base name"),
        (f"{HASH}-", "base name"),
        (f"{HASH}_x", "base name"),
        (f"{HASH[:-1]}-x", "base name"),
        (f"{HASH}x-x", "base name"),
        (f"e{HASH[1:]}-x", "hash part"),
        (f"o{HASH[1:]}-x", "hash part"),
        (f"u{HASH[1:]}-x", "hash part"),
        (f"t{HASH[1:]}-x", "hash part"),
        (f"W{HASH[1:]}-x", "hash part"),
        (f"{HASH}-" + "x" * 212, "longer than 211"),
        (f"{HASH}-.hidden", "starts with '.'"),
        (f"{HASH}-.", "starts with '.'"),
        (f"{HASH}-..", "starts with '.'"),
        (f"{HASH}-a b", "illegal character"),
        (f"{HASH}-a/b", "illegal character"),
        (f"{HASH}-caf\u00e9", "illegal character"),
        (f"{HASH}-a\nb", "illegal character"),
        (f"{HASH}-a\n", "illegal character"),
        (f"{HASH}-a:b", "illegal character"),
        (f"{HASH}-a~b", "illegal character"),
    ],
)
def test_parse_base_name_errors(base: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_base_name(base)


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="hash part"):
        StorePath("short", "name")
    with pytest.raises(ValueError, match="empty"):
        StorePath(HASH, "")


@pytest.mark.parametrize(
    ("s", "ok"),
    [
        (HASH, True),
        ("0" * 32, True),
        ("z" * 32, True),
        ("0" * 31, False),
        ("0" * 33, False),
        ("e" * 32, False),
        (HASH.upper(), False),
        ("", False),
    ],
)
def test_is_valid_hash_part(s: str, ok: bool) -> None:
    assert is_valid_hash_part(s) is ok

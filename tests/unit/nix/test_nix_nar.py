import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from flywheel.nix.nar import (
    DUMP_CHUNK_SIZE,
    MAX_DEPTH,
    MAX_NAME_LEN,
    NarError,
    NarValidator,
    dump_path,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "nix"
REAL_NARS = ["ca.txt.nar", "dep.nar", "top.nar"]
NIX_STORE = shutil.which("nix-store")


# A NAR writer independent of dump_path, so the validator is not checked
# against the code it is meant to catch.
def s(b: bytes) -> bytes:
    return len(b).to_bytes(8, "little") + b + bytes(-len(b) % 8)


def strings(*items: bytes) -> bytes:
    return b"".join(map(s, items))


def regular(contents: bytes, executable: bool = False) -> bytes:
    exe = strings(b"executable", b"") if executable else b""
    return strings(b"(", b"type", b"regular") + exe + s(b"contents") + s(contents) + s(b")")


def symlink(target: bytes) -> bytes:
    return strings(b"(", b"type", b"symlink", b"target") + s(target) + s(b")")


def directory(*entries: tuple[bytes, bytes]) -> bytes:
    body = b"".join(
        strings(b"entry", b"(", b"name") + s(name) + s(b"node") + node + s(b")")
        for name, node in entries
    )
    return strings(b"(", b"type", b"directory") + body + s(b")")


def nar(node: bytes) -> bytes:
    return s(b"nix-archive-1") + node


def validate(data: bytes, chunk: int | None = None) -> None:
    v = NarValidator()
    step = chunk or max(len(data), 1)
    for i in range(0, len(data), step):
        v.feed(data[i : i + step])
    v.finish()


def test_builder_matches_real_nar() -> None:
    assert (FIXTURES / "ca.txt.nar").read_bytes() == nar(regular(b"content-addressed\n"))


@pytest.mark.parametrize("name", REAL_NARS)
@pytest.mark.parametrize("chunk", [1, 7, 8, 13, 4096, None])
def test_accepts_real_nars_in_any_chunking(name: str, chunk: int | None) -> None:
    validate((FIXTURES / name).read_bytes(), chunk)


@pytest.mark.parametrize(
    "node",
    [
        regular(b""),
        regular(b"", executable=True),
        regular(b"12345678"),
        regular(b"\0" * 9, executable=True),
        symlink(b"/nix/store/x"),
        symlink(b"a" * MAX_NAME_LEN),
        directory(),
        directory((b"B", regular(b"")), (b"a", directory()), (b"\xff", symlink(b"."))),
        directory((b"a" * MAX_NAME_LEN, regular(b"x"))),
        directory((b"...", regular(b"")), (b".a", regular(b"")), (b"a b", regular(b""))),
    ],
)
@pytest.mark.parametrize("chunk", [1, 3, None])
def test_accepts_valid_nars(node: bytes, chunk: int | None) -> None:
    validate(nar(node), chunk)


def _nested(depth: int) -> bytes:
    node = directory()
    for _ in range(depth - 1):
        node = directory((b"d", node))
    return nar(node)


def test_depth_limit() -> None:
    validate(_nested(MAX_DEPTH))
    with pytest.raises(NarError, match="nested deeper"):
        validate(_nested(MAX_DEPTH + 1))


def _flip(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + bytes([value]) + data[offset + 1 :]


DEP = (FIXTURES / "dep.nar").read_bytes()
NODE = regular(b"abc")

REJECTED = [
    (b"", "truncated"),
    (s(b"nix-archive-2") + NODE, "expected b'nix-archive-1'"),
    (s(b"nix-archive") + NODE, "expected b'nix-archive-1', got b'nix-archive'"),
    (_flip(DEP, 0, 14), "expected b'nix-archive-1', got 14 bytes"),
    (_flip(DEP, 21, 1), "non-zero padding"),
    (_flip(nar(NODE), len(nar(NODE)) - 16 - 1, 1), "non-zero padding"),
    (DEP[:-1], "truncated"),
    (DEP + b"\0", "trailing data"),
    (DEP + DEP, "trailing data"),
    (nar(NODE) + s(b")"), "trailing data"),
    (nar(directory((b"b", NODE), (b"a", NODE))), "not sorted"),
    (nar(directory((b"a", NODE), (b"a", NODE))), "not sorted"),
    (nar(directory((b"a", NODE), (b"B", NODE))), "not sorted"),
    (nar(directory((b"", NODE))), "invalid file name"),
    (nar(directory((b".", NODE))), "invalid file name"),
    (nar(directory((b"..", NODE))), "invalid file name"),
    (nar(directory((b"a/b", NODE))), "invalid file name"),
    (nar(directory((b"a\0b", NODE))), "invalid file name"),
    (
        nar(directory((b"a" * (MAX_NAME_LEN + 1), NODE))),
        "file name of 4097 bytes is longer than 4096",
    ),
    (nar(directory((b"a", directory((b"..", NODE))))), "invalid file name"),
    (nar(symlink(b"")), "invalid symlink target"),
    (nar(symlink(b"a\0b")), "invalid symlink target"),
    (nar(symlink(b"a" * (MAX_NAME_LEN + 1))), "symlink target of 4097 bytes"),
    (nar(strings(b"(", b"type", b"fifo", b")")), "expected b'regular' or"),
    (nar(strings(b"(", b"regular")), "expected b'type', got 7 bytes"),
    (nar(s(b"[") + NODE[16:]), "expected b'\\('"),
    (
        nar(strings(b"(", b"type", b"regular", b"executable", b"1", b"contents")),
        "expected b'', got 1 bytes",
    ),
    (
        nar(strings(b"(", b"type", b"regular", b"executable", b"", b"executable")),
        "expected b'contents', got 10 bytes",
    ),
    (nar(strings(b"(", b"type", b"regular", b")")), "expected b'executable' or"),
    (nar(NODE[:-16] + strings(b"executable", b"", b")")), "expected b'\\)', got 10"),
    (nar(strings(b"(", b"type", b"symlink", b"contents")), "expected b'target', got 8"),
    (nar(strings(b"(", b"type", b"directory", b"target")), "expected b'entry' or b'\\)', got 6"),
    (nar(strings(b"(", b"type", b"directory", b"entry", b"name")), "expected b'\\(', got 4"),
    (
        nar(strings(b"(", b"type", b"directory", b"entry", b"(", b"node")),
        "expected b'name'",
    ),
    (
        nar(strings(b"(", b"type", b"directory", b"entry", b"(", b"name", b"a", b"(")),
        "expected b'node'",
    ),
    (
        nar(
            strings(b"(", b"type", b"directory", b"entry", b"(", b"name", b"a", b"node")
            + NODE
            + s(b"(")
        ),
        "expected b'\\)', got b'\\('",
    ),
    (s(b"nix-archive-1") + (2**63).to_bytes(8, "little"), "got 9223372036854775808 bytes"),
    (
        nar(strings(b"(", b"type", b"directory", b"entry", b"(", b"name"))
        + (2**64 - 1).to_bytes(8, "little"),
        "file name of 18446744073709551615 bytes",
    ),
]


@pytest.mark.parametrize(("data", "match"), REJECTED)
@pytest.mark.parametrize("chunk", [1, 5, None])
def test_rejects(data: bytes, match: str, chunk: int | None) -> None:
    with pytest.raises(NarError, match=match):
        validate(data, chunk)


@pytest.mark.parametrize("name", REAL_NARS)
def test_every_proper_prefix_is_truncated(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    for end in range(len(data)):
        v = NarValidator()
        v.feed(data[:end])
        with pytest.raises(NarError, match="truncated"):
            v.finish()


def test_failure_is_sticky() -> None:
    v = NarValidator()
    with pytest.raises(NarError):
        v.feed(s(b"nope"))
    with pytest.raises(NarError, match="already failed"):
        v.feed(b"")
    with pytest.raises(NarError, match="already failed"):
        v.finish()
    v = NarValidator()
    with pytest.raises(NarError, match="truncated"):
        v.finish()
    with pytest.raises(NarError, match="already failed"):
        v.finish()


def test_huge_declared_contents_are_not_buffered() -> None:
    header = strings(b"nix-archive-1", b"(", b"type", b"regular", b"contents")
    v = NarValidator()
    v.feed(header + (2**64 - 1).to_bytes(8, "little") + bytes(1 << 20))
    with pytest.raises(NarError, match="truncated"):
        v.finish()


def test_large_file_is_skipped_not_scanned() -> None:
    size = 4 << 30
    chunk = bytes(1 << 20)
    v = NarValidator()
    v.feed(
        strings(b"nix-archive-1", b"(", b"type", b"regular", b"contents")
        + size.to_bytes(8, "little")
    )
    start = time.monotonic()
    for _ in range(size // len(chunk)):
        v.feed(chunk)
    v.feed(s(b")"))
    v.finish()
    # Touching each byte in Python would take minutes for 4 GiB.
    assert time.monotonic() - start < 5


def test_error_type_is_value_error() -> None:
    assert issubclass(NarError, ValueError)


# dump_path


def _dump(path: Path) -> bytes:
    return b"".join(dump_path(path))


def _make_tree(root: Path) -> None:
    root.mkdir()
    (root / "regular.txt").write_bytes(b"hello\n")
    (root / "eight").write_bytes(b"12345678")
    (root / "empty").write_bytes(b"")
    (root / "big").write_bytes(os.urandom(DUMP_CHUNK_SIZE * 2 + 5))
    (root / "exe").write_bytes(b"#!/bin/sh\n")
    (root / "exe").chmod(0o755)
    # Nix looks at the owner's execute bit only.
    (root / "group-exe").write_bytes(b"x")
    (root / "group-exe").chmod(0o654)
    (root / "owner-exe").write_bytes(b"x")
    (root / "owner-exe").chmod(0o700)
    (root / "link").symlink_to("regular.txt")
    (root / "abs-link").symlink_to("/nix/store/does-not-exist")
    (root / "dir-link").symlink_to("sub")
    (root / "sub" / "deeper" / "deepest").mkdir(parents=True)
    (root / "sub" / "deeper" / "deepest" / "f").write_bytes(b"f")
    (root / "emptydir").mkdir()
    for name in ["B", "a", "Z", "_", "-", "a.b", "a-b", "\u00e9", "\u00c9"]:
        (root / "order" / name).mkdir(parents=True, exist_ok=True)
    os.mkdir(os.fsencode(root / "order") + b"/\xff\xfe-not-utf8")


def test_dump_path_matches_builder(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"content-addressed\n")
    assert _dump(tmp_path / "f") == (FIXTURES / "ca.txt.nar").read_bytes()
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "x").write_bytes(b"x")
    (tmp_path / "d" / "x").chmod(0o755)
    (tmp_path / "d" / "l").symlink_to("x")
    assert _dump(tmp_path / "d") == nar(
        directory((b"l", symlink(b"x")), (b"sub", directory()), (b"x", regular(b"x", True)))
    )
    assert _dump(tmp_path / "d" / "l") == nar(symlink(b"x"))


@pytest.mark.nix
@pytest.mark.skipif(NIX_STORE is None, reason="nix-store is not installed")
def test_dump_path_equals_nix_store_dump(tmp_path: Path) -> None:
    assert NIX_STORE is not None
    root = tmp_path / "tree"
    _make_tree(root)
    for path in [root, root / "big", root / "link", root / "exe", root / "emptydir"]:
        expected = subprocess.run([NIX_STORE, "--dump", path], check=True, capture_output=True)
        ours = _dump(path)
        assert ours == expected.stdout, path
        validate(ours, 4099)


def test_dump_path_streams_in_bounded_chunks(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _make_tree(root)
    chunks = list(dump_path(str(root)))
    assert len(chunks) > 2
    assert all(0 < len(c) <= DUMP_CHUNK_SIZE * 2 for c in chunks)
    validate(b"".join(chunks))


def test_dump_path_rejects_special_files(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(NarError, match="neither"):
        _dump(tmp_path)


def test_dump_path_missing() -> None:
    with pytest.raises(FileNotFoundError):
        _dump(Path("/nonexistent/flywheel"))


def test_validator_accepts_whatever_dump_path_writes(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _make_tree(root)
    data = _dump(root)
    for chunk in (7, 8, None):
        validate(data, chunk)

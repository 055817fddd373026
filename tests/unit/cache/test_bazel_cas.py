"""The Bazel side of the cache plane against a real SQLite database and files:
verification, per-cache visibility, the size bound, validated action-cache entries,
storage that lost a blob."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from flywheel.bazel.digests import EMPTY_SHA256, Digest
from flywheel.bazel.reapi import re_pb2
from flywheel.errors import FailedPrecondition, Invalid, StorageFull
from tests.support.cacheworld import World, blob, chunks, result_for


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def put(w: World, data: bytes, cache: str = "a") -> Digest:
    d = blob(data)
    w.cas.put(w.a if cache == "a" else w.b, d, chunks(data))
    return d


def test_cas_roundtrip_and_verification(world: World) -> None:
    d = put(world, b"hello world")
    assert world.cas.stored_size(world.a, d) == 11
    assert world.cas.read(world.a, d) == b"hello world"
    with pytest.raises(Invalid, match="hashes to"):
        world.cas.put(world.a, blob(b"x"), [b"y"])
    with pytest.raises(Invalid, match="larger than its digest"):
        world.cas.put(world.a, Digest(d.hash, 10), chunks(b"hello world"))
    assert world.cas.stored_size(world.a, Digest(EMPTY_SHA256, 0)) == 0
    assert world.cas.find_missing(world.a, [d, blob(b"nope"), Digest(EMPTY_SHA256, 0)]) == \
        [blob(b"nope")]
    assert not list(world.blobs.tmp_dir.iterdir())


def test_zstd_upload_is_stored_decompressed(world: World) -> None:
    data = b"abc" * 10_000
    d = blob(data)
    world.cas.put(world.a, d, chunks(zstandard.compress(data), 100), "zstd")
    assert world.cas.read(world.a, d) == data
    with pytest.raises(Invalid, match="corrupt zstd"):
        world.cas.put(world.a, blob(b"q"), [b"not zstd"], "zstd")


def test_a_blob_is_visible_only_through_the_caches_that_hold_it(world: World) -> None:
    d = put(world, b"private output of a")
    assert world.cas.read(world.b, d) is None
    assert world.cas.find_missing(world.b, [d]) == [d]
    assert world.cas.open(world.b, d) is None
    # Sending the bytes is proof of possession: b holds it too, with one stored copy.
    put(world, b"private output of a", cache="b")
    assert world.cas.read(world.b, d) == b"private output of a"
    assert world.usage() == d.size


def test_adopting_without_bytes_needs_read_access_to_a_holder(world: World) -> None:
    d = put(world, b"shared")
    assert not world.cas.adopt(world.b, d, lambda name, public: False)
    assert world.cas.find_missing(world.b, [d]) == [d]
    assert world.cas.adopt(world.b, d, lambda name, public: name == "a")
    assert world.cas.find_missing(world.b, [d]) == []


def test_action_cache_is_per_cache_and_validated_when_written(world: World) -> None:
    out = put(world, b"output")
    action = "1" * 64
    world.ac.put(world.a, action, result_for(out))
    hit = world.ac.get("a", action)
    assert hit is not None and hit.result == result_for(out)
    miss = world.ac.get("b", action)
    assert miss is not None and miss.result is None
    assert world.ac.get("nonexistent", action) is None
    with pytest.raises(Invalid, match="not a serialized ActionResult"):
        world.ac.put(world.a, "2" * 64, b"\xff\xff\xff")
    bad = re_pb2.ActionResult()
    bad.output_files.add(path="../escape", digest=re_pb2.Digest(hash=out.hash, size_bytes=6))
    with pytest.raises(Invalid, match="invalid output path"):
        world.ac.put(world.a, "2" * 64, bad.SerializeToString())


def test_an_entry_naming_blobs_the_cache_does_not_hold_is_refused(world: World) -> None:
    with pytest.raises(FailedPrecondition, match="upload them first"):
        world.ac.put(world.a, "3" * 64, result_for(blob(b"never uploaded")))
    # Held by another cache only: naming a hash does not make it readable here.
    theirs = put(world, b"b's output", cache="b")
    with pytest.raises(FailedPrecondition):
        world.ac.put(world.a, "3" * 64, result_for(theirs))


def _tree_result(w: World, files: list[bytes]) -> tuple[bytes, Digest]:
    tree = re_pb2.Tree()
    for i, data in enumerate(files):
        tree.root.files.add(name=f"f{i}", digest=re_pb2.Digest(
            hash=blob(data).hash, size_bytes=len(data)))
    tree_bytes = tree.SerializeToString()
    tree_digest = put(w, tree_bytes)
    result = re_pb2.ActionResult()
    result.output_directories.add(path="dir", tree_digest=re_pb2.Digest(
        hash=tree_digest.hash, size_bytes=tree_digest.size))
    return bytes(result.SerializeToString()), tree_digest


def test_tree_contents_are_checked_once_when_written(world: World) -> None:
    files = [b"one", b"two"]
    result, tree = _tree_result(world, files)
    with pytest.raises(FailedPrecondition):
        world.ac.put(world.a, "4" * 64, result)
    for data in files:
        put(world, data)
    world.ac.put(world.a, "4" * 64, result)
    # The lookup no longer reads the Tree: replacing its bytes changes nothing...
    path = world.blobs.local_path(f"cas/{tree.hash}")
    found = world.ac.get("a", "4" * 64)
    assert found is not None and found.result == result
    # ...but a file inside it gone from storage makes the entry a miss.
    os.unlink(world.blobs.local_path(f"cas/{blob(b'two').hash}"))
    found = world.ac.get("a", "4" * 64)
    assert found is not None and found.result is None and found.lost
    world.ac.settle(found)
    assert world.cas.find_missing(world.a, [blob(b"two")]) == [blob(b"two")]
    assert os.path.exists(path)


def test_an_entry_naming_too_many_blobs_is_refused(tmp_path: Path) -> None:
    w = World(tmp_path, max_refs=3)
    files = [bytes([i]) * 3 for i in range(5)]
    for data in files:
        put(w, data)
    result, _ = _tree_result(w, files)
    with pytest.raises(Invalid, match="more than 3 blobs"):
        w.ac.put(w.a, "5" * 64, result)
    w.close()


def test_a_blob_lost_from_storage_is_missing_and_an_upload_restores_it(world: World) -> None:
    out = put(world, b"will be lost")
    world.ac.put(world.a, "6" * 64, result_for(out))
    os.unlink(world.blobs.local_path(f"cas/{out.hash}"))
    assert world.cas.find_missing(world.a, [out]) == [out]
    found = world.ac.get("a", "6" * 64)
    assert found is not None and found.result is None
    assert world.usage() == len(result_for(out))
    put(world, b"will be lost")
    assert world.cas.read(world.a, out) == b"will be lost"
    assert world.usage() == out.size + len(result_for(out))


def test_a_truncated_blob_is_not_served(world: World) -> None:
    out = put(world, b"0123456789")
    with open(world.blobs.local_path(f"cas/{out.hash}"), "r+b") as f:
        f.truncate(4)
    assert world.cas.read(world.a, out) is None
    assert world.cas.open(world.a, out) is None
    put(world, b"0123456789")
    assert world.cas.read(world.a, out) == b"0123456789"


def test_lru_eviction_keeps_recently_used(tmp_path: Path) -> None:
    w = World(tmp_path, max_size=30)
    first = put(w, b"a" * 10)
    w.clock.advance()
    second = put(w, b"b" * 10)
    w.clock.advance()
    put(w, b"c" * 10)
    w.clock.advance()
    assert w.cas.stored_size(w.a, first) == 10  # touch: now the most recently used
    w.clock.advance()
    fourth = put(w, b"d" * 10)
    assert w.cas.stored_size(w.a, second) is None
    assert w.blobs.size(f"cas/{second.hash}") is None
    assert w.cas.stored_size(w.a, first) == 10
    assert w.cas.stored_size(w.a, fourth) == 10
    assert w.usage() == 30
    with pytest.raises(StorageFull):
        put(w, b"e" * 31)
    with pytest.raises(StorageFull, match="size bound"):
        w.cas.put(w.a, None, chunks(b"f" * 31), expected_hash=blob(b"f" * 31).hash)
    assert w.usage() == 30
    assert not list(w.blobs.tmp_dir.iterdir())
    w.close()


def test_eviction_of_an_output_turns_its_action_into_a_miss(tmp_path: Path) -> None:
    w = World(tmp_path, max_size=400)
    out = put(w, b"o" * 100)
    w.clock.advance()
    w.ac.put(w.a, "7" * 64, result_for(out))
    assert w.ac.get("a", "7" * 64).result is not None  # type: ignore[union-attr]
    for i in range(3):
        w.clock.advance()
        put(w, bytes([i]) * 100)
    found = w.ac.get("a", "7" * 64)
    assert found is not None and found.result is None
    w.close()


def test_the_bound_holds_under_concurrent_uploads(tmp_path: Path) -> None:
    w = World(tmp_path, max_size=4096)
    errors: list[BaseException] = []

    def upload(n: int) -> None:
        try:
            for i in range(20):
                data = f"{n}-{i}-".encode() * 40
                w.cas.put(w.a, blob(data), [data])
        except BaseException as e:  # collected for the assertion below
            errors.append(e)

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with w.db.read() as conn:
        assert w.bound.usage(conn) == w.bound.stored(conn) <= 4096
    stored = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in
                 os.walk(w.blobs.root) for f in fs)
    assert stored <= 4096
    w.close()


def test_destroying_a_cache_releases_its_action_cache_bytes(world: World) -> None:
    out = put(world, b"out")
    world.ac.put(world.a, "8" * 64, result_for(out))
    before = world.usage()
    world.caches.destroy("a")
    assert world.usage() == before - len(result_for(out))
    with world.db.read() as conn:
        assert world.bound.usage(conn) == world.bound.stored(conn)

"""BazelService against a real SQLite database and files: verification, isolation, LRU."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from flywheel.bazel.digests import EMPTY_SHA256, Digest
from flywheel.bazel.reapi import re_pb2
from flywheel.cache.bazel.service import BazelError, BazelService, CacheFull, DigestMismatch
from flywheel.cache.tenancy import CacheService
from flywheel.db.engine import make_engine, migrate
from flywheel.db.hot import HotReads
from flywheel.storage.local import LocalBlobStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int = 120_000) -> None:
        self.now += ms


class World:
    def __init__(self, root: Path, max_size: int | None) -> None:
        self.engine = make_engine(f"sqlite:///{root / 'db.sqlite'}")
        migrate(self.engine)
        self.blobs = LocalBlobStore(root)
        self.clock = Clock()
        self.bazel = BazelService(self.engine, HotReads(self.engine), self.blobs, max_size,
                                  clock=self.clock)
        caches = CacheService(self.engine, HotReads(self.engine), "test")
        self.a = caches.create("a")
        self.b = caches.create("b")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path, None)
    yield w
    w.engine.dispose()


def blob(data: bytes) -> Digest:
    return Digest(hashlib.sha256(data).hexdigest(), len(data))


async def _chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def put(w: World, data: bytes) -> Digest:
    d = blob(data)
    asyncio.run(w.bazel.put_cas(d.hash, d.size, _chunks(data)))
    return d


def result_for(*outputs: Digest) -> bytes:
    r = re_pb2.ActionResult(exit_code=0)
    for i, d in enumerate(outputs):
        r.output_files.add(path=f"out/{i}", digest=re_pb2.Digest(hash=d.hash, size_bytes=d.size))
    return bytes(r.SerializeToString())


def test_cas_roundtrip_and_verification(world: World) -> None:
    d = put(world, b"hello world")
    assert world.bazel.cas_size(d.hash) == 11
    with world.bazel.open_cas(d.hash) as f:
        assert f.read() == b"hello world"
    with pytest.raises(DigestMismatch):
        asyncio.run(world.bazel.put_cas(blob(b"x").hash, 1, _chunks(b"y")))
    with pytest.raises(DigestMismatch):
        asyncio.run(world.bazel.put_cas(d.hash, 12, _chunks(b"hello world")))
    assert world.bazel.cas_size(EMPTY_SHA256) == 0
    assert world.bazel.find_missing([d, blob(b"nope"), Digest(EMPTY_SHA256, 0)]) == [blob(b"nope")]
    assert not list(world.blobs.tmp_dir.iterdir())


def test_zstd_upload_is_stored_decompressed(world: World) -> None:
    import zstandard

    data = b"abc" * 10_000
    d = blob(data)
    asyncio.run(world.bazel.put_cas(d.hash, d.size,
                                    _chunks(zstandard.compress(data), 100), "zstd"))
    with world.bazel.open_cas(d.hash) as f:
        assert f.read() == data
    with pytest.raises(BazelError, match="corrupt zstd"):
        asyncio.run(world.bazel.put_cas(blob(b"q").hash, 1, _chunks(b"not zstd"), "zstd"))


def test_action_cache_is_per_cache_and_validated(world: World) -> None:
    out = put(world, b"output")
    action = "1" * 64
    world.bazel.put_ac(world.a, action, result_for(out))
    hit = world.bazel.get_ac("a", action)
    assert hit is not None and hit.result == result_for(out)
    miss = world.bazel.get_ac("b", action)
    assert miss is not None and miss.result is None
    assert world.bazel.get_ac("nonexistent", action) is None
    with pytest.raises(BazelError, match="not a serialized ActionResult"):
        world.bazel.put_ac(world.a, "2" * 64, b"\xff\xff\xff")
    bad = re_pb2.ActionResult()
    bad.output_files.add(path="../escape", digest=re_pb2.Digest(hash=out.hash, size_bytes=6))
    with pytest.raises(BazelError, match="invalid output path"):
        world.bazel.put_ac(world.a, "2" * 64, bad.SerializeToString())


def test_result_with_missing_output_is_a_miss(world: World) -> None:
    world.bazel.put_ac(world.a, "3" * 64, result_for(blob(b"never uploaded")))
    found = world.bazel.get_ac("a", "3" * 64)
    assert found is not None and found.result is None


def test_lru_eviction_keeps_recently_used(tmp_path: Path) -> None:
    w = World(tmp_path, max_size=30)
    first = put(w, b"a" * 10)
    w.clock.advance()
    second = put(w, b"b" * 10)
    w.clock.advance()
    put(w, b"c" * 10)
    w.clock.advance()
    assert w.bazel.cas_size(first.hash) == 10  # touch: now the most recently used
    w.clock.advance()
    fourth = put(w, b"d" * 10)
    assert w.bazel.cas_size(second.hash) is None
    assert not w.blobs.exists(f"cas/{second.hash}")
    assert w.bazel.cas_size(first.hash) == 10
    assert w.bazel.cas_size(fourth.hash) == 10
    assert w.bazel.usage() == 30
    with pytest.raises(CacheFull):
        put(w, b"e" * 31)
    assert w.bazel.usage() == 30
    assert not list(w.blobs.tmp_dir.iterdir())
    w.engine.dispose()


def test_eviction_of_an_output_turns_its_action_into_a_miss(tmp_path: Path) -> None:
    w = World(tmp_path, max_size=400)
    out = put(w, b"o" * 100)
    w.clock.advance()
    w.bazel.put_ac(w.a, "4" * 64, result_for(out))
    assert w.bazel.get_ac("a", "4" * 64).result is not None  # type: ignore[union-attr]
    for i in range(3):
        w.clock.advance()
        put(w, bytes([i]) * 100)
    found = w.bazel.get_ac("a", "4" * 64)
    assert found is not None and found.result is None
    w.engine.dispose()

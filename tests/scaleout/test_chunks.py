"""Chunk-level deduplication of large NARs, on the domain (SQLite and local files): the
chunker is independent of how the stream is fed, similar NARs share their chunks, a failed
upload leaves no chunk and no row, and chunks are collected once no NAR uses them."""

from __future__ import annotations

import lzma
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyfastcdc import FastCDC
from sqlalchemy import func, select

from flywheel.cache.nix.chunks import Chunker, ChunkStore
from flywheel.cache.nix.nars import Chunking, NarStore
from flywheel.cache.nix.paths import PathService
from flywheel.cache.nix.verify import NarLimits
from flywheel.db.schema import chunks, nars
from flywheel.errors import Invalid
from flywheel.maintenance.gc import Collector
from flywheel.storage.serving import Stream
from tests.support.cacheworld import World, nar_of, narinfo_for

AVG = 4096


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    w.nars = NarStore(w.db, w.blobs, NarLimits(1 << 30),
                      chunking=Chunking(ChunkStore(w.db, w.blobs), 32 << 10, AVG))
    w.paths = PathService(w.db, w.nars, w.caches)
    yield w
    w.close()


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=0, max_size=120_000), st.lists(st.integers(1, 40_000), min_size=1))
def test_the_chunker_cuts_the_same_chunks_however_the_stream_arrives(
        data: bytes, sizes: list[int]) -> None:
    chunker = Chunker(AVG)
    got: list[bytes] = []
    pos, i = 0, 0
    while pos < len(data):
        got += chunker.feed(data[pos:pos + sizes[i % len(sizes)]])
        pos += sizes[i % len(sizes)]
        i += 1
    got += chunker.finish()
    assert got == [bytes(c.data) for c in FastCDC(AVG).cut_buf(data)]


def _push(w: World, hash_part: str, contents: bytes, compress: bool = False) -> str:
    nar = nar_of(contents)
    body = lzma.compress(nar) if compress else nar
    name, text = narinfo_for(hash_part, body, nar, "xz" if compress else "none",
                             ".xz" if compress else "")
    a = w.caches.get("a")
    w.paths.put_nar(a, name, [body[i:i + 10_000] for i in range(0, len(body), 10_000)])
    assert w.paths.put_narinfo(a, hash_part, text, lambda _n, _p: False)
    return name


def _stored(w: World) -> int:
    with w.db.read() as conn:
        return int(conn.execute(select(func.coalesce(func.sum(chunks.c.stored_size), 0)))
                   .scalar_one())


def _read(w: World, file_hash: str) -> bytes:
    found = w.paths.nar("a", file_hash)
    assert found is not None and found.nar is not None
    stream = w.nars.content(found.nar, head=False)
    assert isinstance(stream, Stream)
    out = b"".join(iter(stream.read, b""))
    stream.close()
    return out


def test_two_versions_of_a_large_nar_share_most_of_their_chunks(world: World) -> None:
    rng = random.Random(7)
    v1 = bytes(rng.getrandbits(8) for _ in range(400_000))
    v2 = v1[:150_000] + b"a small change" + v1[150_000:]
    _push(world, "1" * 32, v1)
    first = _stored(world)
    _push(world, "2" * 32, v2)
    second = _stored(world) - first
    assert second < len(v2) // 10, (first, second)
    for hash_part, contents in (("1" * 32, v1), ("2" * 32, v2)):
        info = world.paths.narinfo("a", hash_part)
        assert info is not None and info.text is not None
        file_hash = next(line for line in info.text.splitlines()
                         if line.startswith("URL: ")).split("/")[1].removesuffix(".nar")
        assert _read(world, file_hash) == nar_of(contents)


def test_the_same_nar_in_another_compression_is_stored_once(world: World) -> None:
    contents = os.urandom(100_000)
    _push(world, "3" * 32, contents)
    before = _stored(world)
    _push(world, "4" * 32, contents, compress=True)
    assert _stored(world) == before
    with world.db.read() as conn:
        assert conn.execute(select(func.count()).where(nars.c.alias_of.is_(None))
                            ).scalar_one() == 1


def test_a_failed_upload_leaves_no_chunk_and_no_row(world: World) -> None:
    nar = nar_of(os.urandom(200_000))
    wrong = "0" * 52
    with pytest.raises(Invalid, match="corrupt or truncated"):
        world.paths.put_nar(world.caches.get("a"), f"{wrong}.nar", [nar])
    assert _stored(world) == 0
    assert not [k for k in world.blobs.iter_keys() if k.startswith("chunk/")]
    with world.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(nars)).scalar_one() == 0


def test_chunks_are_collected_once_no_nar_uses_them(world: World) -> None:
    _push(world, "5" * 32, os.urandom(100_000))
    assert world.paths.delete(world.caches.get("a"), "5" * 32)
    report = Collector(world.db, world.blobs, world.bound, grace=0, clock=lambda: 2e9).collect()
    assert report.nars == 1 and report.chunks > 10
    assert _stored(world) == 0
    assert not [k for k in world.blobs.iter_keys() if k.startswith("chunk/")]

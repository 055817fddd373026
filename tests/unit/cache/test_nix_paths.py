"""The Nix side of the cache plane against a real SQLite database and files: content stored
once but held per cache, proof of possession, errors that reveal nothing, storage faults
that heal on the next upload."""

from __future__ import annotations

import lzma
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel.errors import FailedPrecondition, Invalid
from flywheel.nix.narinfo import parse
from tests.support.cacheworld import World, chunks, nar_of, narinfo_for

H1 = "0" * 31 + "1"
H2 = "0" * 31 + "2"


def nobody(_name: str, _public: bool) -> bool:
    return False


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def push(w: World, cache: str, hash_part: str, contents: bytes) -> tuple[str, bytes]:
    nar = nar_of(contents)
    name, text = narinfo_for(hash_part, nar, nar)
    target = w.caches.get(cache)
    w.paths.put_nar(target, name, chunks(nar, 100))
    w.paths.put_narinfo(target, hash_part, text, nobody)
    return name, text


def test_a_narinfo_naming_a_nar_held_elsewhere_is_refused_without_a_clue(world: World) -> None:
    name, text = push(world, "a", H1, b"secret of a")
    b = world.caches.get("b")
    with pytest.raises(FailedPrecondition) as refused:
        world.paths.put_narinfo(b, H2, text.replace(H1.encode(), H2.encode()), nobody)
    message = refused.value.message
    assert "upload the NAR first" in message
    # A wrong size or hash gets the very same answer: nothing about what is stored.
    wrong = text.replace(H1.encode(), H2.encode()).replace(b"NarSize: ", b"NarSize: 1")
    with pytest.raises(FailedPrecondition) as again:
        world.paths.put_narinfo(b, H2, wrong, nobody)
    assert again.value.message == message
    found = world.paths.nar("b", name.removesuffix(".nar"))
    assert found is not None and found.nar is None


def test_a_reader_of_a_holder_may_name_its_nar(world: World) -> None:
    _, text = push(world, "a", H1, b"shared")
    b = world.caches.get("b")
    assert world.paths.put_narinfo(b, H1, text, lambda name, _public: name == "a")
    found = world.paths.narinfo("b", H1)
    assert found is not None and found.text is not None


def test_claims_that_do_not_match_name_no_stored_values(world: World) -> None:
    nar = nar_of(b"contents")
    name, text = narinfo_for(H1, nar, nar)
    a = world.caches.get("a")
    world.paths.put_nar(a, name, [nar])
    bad = text.replace(f"NarSize: {len(nar)}".encode(), b"NarSize: 1")
    with pytest.raises(Invalid) as refused:
        world.paths.put_narinfo(a, H1, bad, nobody)
    assert str(len(nar)) not in refused.value.message


def test_a_nar_lost_or_truncated_in_storage_is_restored_by_an_upload(world: World) -> None:
    name, _ = push(world, "a", H1, b"x" * 5000)
    file_hash = name.removesuffix(".nar")
    path = world.blobs.local_path(f"nar/{file_hash}")
    with open(path, "r+b") as f:
        f.truncate(100)
    found = world.paths.nar("a", file_hash)
    assert found is not None and found.nar is not None
    world.paths.nars.mark_broken(found.nar)
    assert world.paths.narinfo("a", H1).text is None  # type: ignore[union-attr]
    push(world, "a", H1, b"x" * 5000)
    assert os.path.getsize(path) == found.nar.file_size
    assert world.paths.narinfo("a", H1).text is not None  # type: ignore[union-attr]
    assert not world.paths.nar("a", file_hash).broken  # type: ignore[union-attr]


def test_a_damaged_nar_is_replaced_by_the_same_nar_in_another_compression(
        world: World) -> None:
    nar = nar_of(b"y" * 5000)
    plain, _ = push(world, "a", H1, b"y" * 5000)
    os.unlink(world.blobs.local_path(f"nar/{plain.removesuffix('.nar')}"))
    xz = lzma.compress(nar)
    name, text = narinfo_for(H1, xz, nar, "xz", ".xz")
    a = world.caches.get("a")
    kept = world.paths.put_nar(a, name, [xz])
    assert kept.compression == "xz"
    served = world.paths.narinfo("a", H1)
    assert served is not None and served.text is not None
    info = parse(served.text.encode(), "/nix/store")
    assert info.url == f"nar/{name}" and info.compression == "xz"
    assert world.paths.put_narinfo(a, H1, text, nobody) is False  # the first upload stays


def test_upload_path_says_deduplicated_only_to_a_reader_of_the_copy(world: World) -> None:
    from flywheel.nix.hashes import NixHash
    from flywheel.nix.narinfo import NarInfo
    from flywheel.nix.storepath import parse_path

    nar = nar_of(b"attic" * 100)
    _, text = push(world, "a", H1, b"attic" * 100)
    stored = parse(text, "/nix/store")
    info = NarInfo(store_path=parse_path(f"/nix/store/{H1}-thing", "/nix/store"),
                   url="nar/pending.nar", compression="none",
                   nar_hash=NixHash.parse(stored.nar_hash.to_base32()), nar_size=len(nar),
                   references=[])
    b = world.caches.get("b")
    outcome = world.paths.upload_path(b, info, chunks(nar, 64), nobody)
    assert not outcome.deduplicated
    outcome = world.paths.upload_path(world.caches.create("c"), info, [nar],
                                      lambda name, _p: name == "a")
    assert outcome.deduplicated


def test_a_narinfo_whose_nar_row_vanishes_meanwhile_is_not_taken_as_present(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A concurrent ``fsck --repair`` removed the NAR between the check and the insert: the
    foreign-key failure must not read as "already present"."""
    nar = nar_of(b"vanishing")
    name, text = narinfo_for(H2, nar, nar)
    a = world.caches.get("a")
    kept = world.paths.put_nar(a, name, [nar])
    monkeypatch.setattr(world.paths, "_possessed", lambda *_: (kept, kept))
    with world.db.write() as conn:
        conn.exec_driver_sql("DELETE FROM nars")
    with pytest.raises(FailedPrecondition, match="upload it again"):
        world.paths.put_narinfo(a, H2, text, nobody)
    assert world.paths.narinfo("a", H2).text is None  # type: ignore[union-attr]


def test_a_compression_that_loses_the_race_keeps_no_bytes(world: World) -> None:
    """Two compressions of one NAR upload at once: both may place their files before
    either records; the one recorded second becomes an alias and its bytes go."""
    nar = nar_of(b"raced" * 1000)
    xz = lzma.compress(nar)
    writer = world.nars.writer()
    late = world.nars.verify("xz", [xz], writer.write)
    writer.finish()
    writer.place(f"nar/{late.file_hash}")  # placed, not yet recorded
    first_name, _ = narinfo_for(H1, nar, nar)
    first = world.nars.ingest(first_name, [nar])
    assert world.nars.record(late, writer) == first
    writer.close()
    assert world.blobs.size(f"nar/{late.file_hash}") is None
    assert world.blobs.size(f"nar/{first.file_hash}") == len(nar)

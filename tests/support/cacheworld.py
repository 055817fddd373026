"""The cache plane's domain over a real SQLite database and files, with a clock to move."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from flywheel.bazel.digests import Digest
from flywheel.bazel.reapi import re_pb2
from flywheel.cache.bazel.action_cache import ActionCache
from flywheel.cache.bazel.cas import CasStore
from flywheel.cache.bazel.size_bound import SizeBound
from flywheel.cache.nix.nars import NarStore
from flywheel.cache.nix.paths import PathService
from flywheel.cache.nix.verify import NarLimits
from flywheel.cache.tenancy import CacheService
from flywheel.db.engine import Database, make_engine, migrate
from flywheel.storage.local import LocalBlobStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int = 120_000) -> None:
        self.now += ms


def sqlite_database(root: Path) -> str:
    return f"sqlite:///{root / 'db.sqlite'}"


# Where a World keeps its metadata; the PostgreSQL run of the domain tests
# (tests/scaleout/test_domain_postgres.py) points it at a fresh PostgreSQL database.
database_for: Callable[[Path], str] = sqlite_database


class World:
    def __init__(self, root: Path, max_size: int | None = None, max_refs: int = 1000) -> None:
        engine = make_engine(database_for(root))
        migrate(engine)
        self.db = Database(engine)
        self.blobs = LocalBlobStore(root)
        self.clock = Clock()
        self.bound = SizeBound(max_size, self.blobs)
        self.cas = CasStore(self.db, self.blobs, self.bound, clock=self.clock)
        self.ac = ActionCache(self.db, self.blobs, self.cas, self.bound, max_refs,
                              clock=self.clock)
        self.caches = CacheService(self.db, "test")
        self.caches.on_destroy.append(self.ac.release)
        self.nars = NarStore(self.db, self.blobs, NarLimits(1 << 30))
        self.paths = PathService(self.db, self.nars, self.caches)
        self.a = self.caches.create("a", is_public=False)
        self.b = self.caches.create("b", is_public=False)

    def usage(self) -> int:
        with self.db.read() as conn:
            return self.bound.usage(conn)

    def close(self) -> None:
        self.db.close()


def blob(data: bytes) -> Digest:
    return Digest(hashlib.sha256(data).hexdigest(), len(data))


def chunks(data: bytes, size: int = 7) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def result_for(*outputs: Digest) -> bytes:
    r = re_pb2.ActionResult(exit_code=0)
    for i, d in enumerate(outputs):
        r.output_files.add(path=f"out/{i}", digest=re_pb2.Digest(hash=d.hash, size_bytes=d.size))
    return bytes(r.SerializeToString())


def nar_of(contents: bytes) -> bytes:
    """The NAR of a single regular file."""
    def s(b: bytes) -> bytes:
        return len(b).to_bytes(8, "little") + b + b"\0" * (-len(b) % 8)
    return b"".join(s(x) for x in (b"nix-archive-1", b"(", b"type", b"regular", b"contents",
                                   contents, b")"))


def random_hash_part() -> str:
    """A store path hash part not used before: 32 characters of nix-base32."""
    alphabet = "0123456789abcdfghijklmnpqrsvwxyz"
    return "".join(alphabet[b % 32] for b in os.urandom(32))


def nix_hash(data: bytes) -> str:
    from flywheel.nix.base32 import encode
    return "sha256:" + encode(hashlib.sha256(data).digest())


def narinfo_for(hash_part: str, file_bytes: bytes, nar: bytes, compression: str = "none",
                ext: str = "") -> tuple[str, bytes]:
    """(the NAR's file name, a narinfo naming it) for a path called ``<hash>-thing``."""
    file_hash = nix_hash(file_bytes).removeprefix("sha256:")
    name = f"{file_hash}.nar{ext}"
    text = (f"StorePath: /nix/store/{hash_part}-thing\nURL: nar/{name}\n"
            f"Compression: {compression}\nNarHash: {nix_hash(nar)}\nNarSize: {len(nar)}\n"
            "References: \n")
    return name, text.encode()

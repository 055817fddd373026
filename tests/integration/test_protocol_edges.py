"""Adversarial requests against the Nix binary cache protocol of a real flywheel server.

Every refused upload is checked for its exact status *and* for leaving nothing behind: no
narinfo becomes visible, no blob is added under ``blobs/``, no upload is left in ``tmp/``.

Most tests share one server (module scope) because a ``flywheel serve`` start and every
CLI call cost over a second each; the tests compare before/after snapshots of the data
directory, use fresh random NARs and store-path hashes, and so do not depend on order.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import hashlib
import lzma
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
import zstandard

from flywheel.auth.permissions import CachePermission, Grants
from flywheel.auth.tokens import TokenSigner, new_secret
from flywheel.nix.base32 import encode as b32
from flywheel.nix.nar import dump_path
from flywheel.server import metrics
from tests.support.hostile import (
    nar_str,
    peak_rss_kib,
    processes_running,
    reset_peak_rss,
    zstd_bomb,
)
from tests.support.server import FlywheelServer

EXT = {"none": "", "zstd": ".zst", "xz": ".xz", "bzip2": ".bz2"}
ERROR_KEYS = {"code", "error", "message"}
# One client for the whole module: building one per request costs more than most requests.
# It never reuses a connection: after refusing an upload early the server drops the
# connection silently (see test_connection_after_an_early_refusal_is_not_dropped_silently),
# which would make unrelated later requests flaky. A new connection per request also
# spreads the requests over both worker processes.
HTTP_WORKER = "flywheel.server.http_worker"
HTTP = httpx.Client(timeout=60, headers={"Connection": "close"})


# ---------------------------------------------------------------- building uploads


def _sha(data: bytes) -> str:
    return b32(hashlib.sha256(data).digest())


def _hash_part() -> str:
    """A random store-path hash part: 20 bytes are exactly 32 nix-base32 characters."""
    return b32(os.urandom(20))


def _compress(nar: bytes, compression: str) -> bytes:
    if compression == "none":
        return nar
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3, write_checksum=True).compress(nar)
    if compression == "xz":
        return lzma.compress(nar, preset=0)
    if compression == "bzip2":
        return bz2.compress(nar, 1)
    raise AssertionError(compression)


_counter = iter(range(1_000_000))


def _make_nar(tmp_path: Path, size: int = 4096) -> bytes:
    """A fresh, unique NAR of a small tree (directory, executable, symlink, data file)."""
    root = tmp_path / f"tree-{next(_counter)}-{os.getpid()}"
    (root / "bin").mkdir(parents=True)
    exe = root / "bin" / "hello"
    exe.write_text("#!/bin/sh\necho hello\n")
    exe.chmod(0o755)
    (root / "bin" / "link").symlink_to("hello")
    # Half random (unique), half text (so compressors have something to squeeze).
    (root / "data").write_bytes(os.urandom(size // 2) + b"flywheel " * (size // 18))
    return b"".join(dump_path(root))


@dataclass
class Nar:
    nar: bytes
    compression: str
    body: bytes

    @classmethod
    def of(cls, nar: bytes, compression: str) -> Nar:
        return cls(nar, compression, _compress(nar, compression))

    @property
    def file_hash(self) -> str:
        return _sha(self.body)

    @property
    def file_name(self) -> str:
        return f"{self.file_hash}.nar{EXT[self.compression]}"

    @property
    def url(self) -> str:
        return f"nar/{self.file_name}"

    @property
    def nar_hash(self) -> str:
        return "sha256:" + _sha(self.nar)


def _narinfo(n: Nar, hash_part: str, name: str = "edge", **fields: str | None) -> str:
    """Narinfo text as Nix writes it; a keyword overrides a field, None drops it."""
    values: dict[str, str | None] = {
        "StorePath": f"/nix/store/{hash_part}-{name}",
        "URL": n.url,
        "Compression": n.compression,
        "FileHash": f"sha256:{n.file_hash}",
        "FileSize": str(len(n.body)),
        "NarHash": n.nar_hash,
        "NarSize": str(len(n.nar)),
        "References": "",
    }
    values.update(fields)
    return "".join(f"{k}: {v}\n" for k, v in values.items() if v is not None)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------- the shared server


@dataclass
class Env:
    srv: FlywheelServer
    admin: str
    puller: str        # --pull main
    pusher: str        # --push main
    deleter: str       # --delete main
    alpha_pusher: str  # --push alpha (a private cache)

    @property
    def url(self) -> str:
        return self.srv.url

    def put_nar(self, n: Nar, token: str | None = None, cache: str = "main",
                file_name: str | None = None) -> httpx.Response:
        return HTTP.put(f"{self.url}/{cache}/nar/{file_name or n.file_name}", content=n.body,
                        headers=_bearer(token or self.admin), timeout=60)

    def put_narinfo(self, hash_part: str, text: str | bytes, token: str | None = None,
                    cache: str = "main") -> httpx.Response:
        return HTTP.put(f"{self.url}/{cache}/{hash_part}.narinfo", content=text,
                        headers=_bearer(token or self.admin), timeout=60)

    def get_narinfo(self, hash_part: str, cache: str = "main") -> httpx.Response:
        return HTTP.get(f"{self.url}/{cache}/{hash_part}.narinfo", headers=_bearer(self.admin))

    def upload(self, n: Nar, hash_part: str, cache: str = "main", **fields: str | None) -> None:
        r = self.put_nar(n, cache=cache)
        assert r.status_code == 200, r.text
        r = self.put_narinfo(hash_part, _narinfo(n, hash_part, **fields), cache=cache)
        assert r.status_code == 200, r.text


def _blobs(srv: FlywheelServer) -> set[str]:
    root = srv.data_dir / "blobs"
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _tmp(srv: FlywheelServer) -> list[str]:
    return sorted(os.listdir(srv.data_dir / "tmp"))


class Snapshot:
    """What is stored before a request, to prove afterwards that nothing was added."""

    def __init__(self, srv: FlywheelServer) -> None:
        self.srv = srv
        self.blobs = _blobs(srv)

    def new_blobs(self) -> set[str]:
        return _blobs(self.srv) - self.blobs

    def assert_unchanged(self) -> None:
        assert self.new_blobs() == set(), "a refused upload left a stored blob"
        assert _tmp(self.srv) == [], "a finished upload left a temporary file"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    srv = FlywheelServer(tmp_path_factory.mktemp("edges") / "data").start()
    try:
        with ThreadPoolExecutor(3) as pool:  # each CLI start costs about a second
            created = [pool.submit(srv.cli, "cache", "create", "alpha", "--private"),
                       pool.submit(srv.cli, "cache", "create", "rotating")]
            tokens = list(pool.map(lambda a: srv.mint(*a), [
                ("puller", "--pull", "main"), ("pusher", "--push", "main"),
                ("janitor", "--delete", "main"), ("alpha-ci", "--push", "alpha")]))
            for job in created:
                job.result()
        yield Env(srv, srv.admin_token, *tokens)
    finally:
        srv.stop()


@pytest.fixture(scope="module", autouse=True)
def _close_http_client() -> Iterator[None]:
    yield
    HTTP.close()


@pytest.fixture(autouse=True)
def _no_upload_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "env" in request.fixturenames:
        srv = request.getfixturevalue("env").srv
        assert _tmp(srv) == [], "an upload left a temporary file behind"


@dataclass
class Stored:
    n: Nar
    hash_part: str


@pytest.fixture(scope="module")
def stored(env: Env, tmp_path_factory: pytest.TempPathFactory) -> Stored:
    n = Nar.of(_make_nar(tmp_path_factory.mktemp("stored"), 20_000), "zstd")
    h = _hash_part()
    env.upload(n, h)
    return Stored(n, h)


# ---------------------------------------------------------------- NAR uploads


def _refused_nar(env: Env, n: Nar, status: int = 400, file_name: str | None = None,
                 body: bytes | None = None) -> httpx.Response:
    """PUT a NAR that must be refused; check nothing stays and the narinfo cannot use it."""
    snap = Snapshot(env.srv)
    name = file_name or n.file_name
    r = HTTP.put(f"{env.url}/main/nar/{name}", content=n.body if body is None else body,
                 headers=_bearer(env.admin), timeout=60)
    assert r.status_code == status, (name, r.status_code, r.text)
    assert set(r.json()) == ERROR_KEYS and r.json()["code"] == status
    snap.assert_unchanged()
    # The NAR is not servable, and a narinfo naming it is refused.
    assert HTTP.get(f"{env.url}/main/nar/{name}").status_code == 404
    h = _hash_part()
    text = _narinfo(n, h, URL=f"nar/{name}")
    assert env.put_narinfo(h, text).status_code == 400
    assert env.get_narinfo(h).status_code == 404
    snap.assert_unchanged()
    return r


@pytest.mark.parametrize("compression", ["none", "zstd", "xz", "bzip2"])
def test_nar_whose_bytes_do_not_hash_to_its_name_is_refused(env: Env, tmp_path: Path,
                                                            compression: str) -> None:
    n = Nar.of(_make_nar(tmp_path), compression)
    # Another valid file of the same kind under this name: only the name check can tell.
    other = _compress(_make_nar(tmp_path), compression)
    r = _refused_nar(env, n, body=other)
    assert "hash" in r.json()["message"]
    # One flipped byte in the middle: same length, different hash.
    mid = len(n.body) // 2
    _refused_nar(env, n, body=n.body[:mid] + bytes([n.body[mid] ^ 0x55]) + n.body[mid + 1:])
    # Truncated: half the file under the full file's name.
    _refused_nar(env, n, body=n.body[: len(n.body) // 2])
    # The genuine file is then accepted under that name.
    assert env.put_nar(n).status_code == 200


def test_upload_cut_off_mid_stream_leaves_nothing(env: Env, tmp_path: Path) -> None:
    """The client announces the whole file, sends a third and disconnects."""
    n = Nar.of(_make_nar(tmp_path, 3_000_000), "none")
    snap = Snapshot(env.srv)
    with socket.create_connection(("127.0.0.1", env.srv.port)) as sock:
        sock.sendall(f"PUT /main/nar/{n.file_name} HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {env.admin}\r\n"
                     f"Content-Length: {len(n.body)}\r\n\r\n".encode())
        sock.sendall(n.body[: len(n.body) // 3])
        deadline = time.monotonic() + 5
        while not _tmp(env.srv) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _tmp(env.srv), "the upload should be in progress in tmp/"
    deadline = time.monotonic() + 10
    while _tmp(env.srv) and time.monotonic() < deadline:
        time.sleep(0.05)
    snap.assert_unchanged()
    assert HTTP.get(f"{env.url}/main/nar/{n.file_name}").status_code == 404
    # The same file, sent whole afterwards, is accepted (nothing poisoned its name).
    assert env.put_nar(n).status_code == 200


@pytest.mark.parametrize("ext", [".br", ".gz", ".lz4", ".zstd", ".XZ", ""])
def test_nar_with_unknown_extension_is_refused(env: Env, tmp_path: Path, ext: str) -> None:
    nar = _make_nar(tmp_path)
    body = gzip.compress(nar) if ext == ".gz" else _compress(nar, "zstd")
    n = Nar(nar, "zstd", body)
    name = f"{n.file_hash}.nar{ext}" if ext else f"{n.file_hash}.narx"
    r = _refused_nar(env, n, file_name=name)
    assert "bad NAR file name" in r.json()["message"]


@pytest.mark.parametrize("name", [
    "0" * 51 + ".nar",                    # one character short
    "0" * 53 + ".nar",                    # one too long
    "e" * 52 + ".nar",                    # 'e' is not nix-base32
    "A" * 52 + ".nar",
    "nar",
])
def test_nar_name_that_is_not_a_file_hash_is_refused(env: Env, tmp_path: Path,
                                                     name: str) -> None:
    n = Nar.of(_make_nar(tmp_path), "none")
    _refused_nar(env, n, file_name=name)


@pytest.mark.parametrize("compression", ["zstd", "xz", "bzip2"])
def test_corrupt_compressed_stream_is_refused(env: Env, tmp_path: Path,
                                              compression: str) -> None:
    """Named by the hash of the corrupt bytes, so only decompression can catch it."""
    n = Nar.of(_make_nar(tmp_path, 200_000), compression)
    mid = len(n.body) // 2
    flipped = Nar(n.nar, compression, n.body[:mid] + bytes([n.body[mid] ^ 0xFF]) +
                  n.body[mid + 1:])
    _refused_nar(env, flipped)
    truncated = Nar(n.nar, compression, n.body[:mid])
    _refused_nar(env, truncated)
    bad_magic = Nar(n.nar, compression, b"\0\0\0\0" + n.body[4:])
    _refused_nar(env, bad_magic)


def _read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP/1.1 response with a Content-Length: (head, body); b"" heads on EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b"", data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-length: *(\d+)", head)
    assert m, head
    while len(body) < int(m.group(1)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head, body


def test_connection_after_an_early_refusal_is_not_dropped_silently(env: Env) -> None:
    # Whether the server says "Connection: close" is a race on its side, so try a few times;
    # every attempt must either say so or keep the connection usable.
    for _ in range(5):
        body = b"\0\0\0\0" + os.urandom(200_000)  # not zstd from its first bytes on
        with socket.create_connection(("127.0.0.1", env.srv.port), timeout=10) as sock:
            sock.sendall(f"PUT /main/nar/{_sha(body)}.nar.zst HTTP/1.1\r\nHost: x\r\n"
                         f"Authorization: Bearer {env.admin}\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:1000])
            head, reply = _read_response(sock)
            assert head.startswith(b"HTTP/1.1 400 "), head
            assert b"zstd" in reply
            if re.search(rb"(?im)^connection: *close", head):
                continue  # the client was told not to reuse the connection
            # Not told: the connection must stay usable for the next request.
            try:
                sock.sendall(body[1000:] +
                             b"GET /main/nix-cache-info HTTP/1.1\r\nHost: x\r\n\r\n")
                head, reply = _read_response(sock)
            except OSError as e:
                pytest.fail(f"connection dropped without 'Connection: close': {e!r}")
            assert head.startswith(b"HTTP/1.1 200 "), \
                f"connection dropped without 'Connection: close' (got {head!r})"
            assert b"StoreDir: /nix/store" in reply


def test_zstd_frame_missing_its_checksum_is_refused(env: Env, tmp_path: Path) -> None:
    n = Nar.of(_make_nar(tmp_path), "zstd")
    truncated = Nar(n.nar, "zstd", n.body[:-4])
    with pytest.raises(zstandard.ZstdError):
        zstandard.ZstdDecompressor().decompress(truncated.body)
    _refused_nar(env, truncated)


@pytest.mark.parametrize("compression", ["none", "zstd", "xz", "bzip2"])
def test_valid_compression_of_something_that_is_not_a_nar_is_refused(
        env: Env, compression: str) -> None:
    for payload in (os.urandom(10_000), b"", b"nix-archive-1", b"\x0d" + b"\0" * 7 +
                    b"nix-archive-2\0\0\0"):
        n = Nar.of(payload, compression)
        r = _refused_nar(env, n)
        assert ("NAR" in r.json()["message"] or "empty" in r.json()["message"]), r.text


@pytest.mark.parametrize("compression,garbage", [
    ("none", b"\0" * 8),
    ("none", b"x"),
    ("zstd", b"trailing garbage"),
    ("xz", b"trailing garbage"),
    ("bzip2", b"trailing garbage"),
    # A second, complete frame holding more data after the end of the NAR.
    ("zstd", zstandard.ZstdCompressor().compress(b"\0" * 8)),
    # The start of another frame that never completes.
    ("zstd", b"\x28\xb5\x2f"),
])
def test_nar_with_trailing_garbage_is_refused(env: Env, tmp_path: Path, compression: str,
                                              garbage: bytes) -> None:
    n = Nar.of(_make_nar(tmp_path), compression)
    _refused_nar(env, Nar(n.nar, compression, n.body + garbage))
    # The clean file still goes in afterwards.
    assert env.put_nar(n).status_code == 200


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlywheelServer]:
    """A server that takes NARs of at most 1 MiB."""
    srv = FlywheelServer(tmp_path_factory.mktemp("small") / "data",
                         env={"FLYWHEEL_CACHE_MAX_NAR_SIZE": "1MiB"}).start()
    try:
        yield srv
    finally:
        srv.stop()


def _nar_of_size(size: int) -> bytes:
    """A one-file NAR of exactly ``size`` bytes with incompressible contents."""
    head = b"".join(nar_str(s) for s in (b"nix-archive-1", b"(", b"type", b"regular",
                                          b"contents"))
    tail = nar_str(b")")
    n_contents = size - len(head) - 8 - len(tail)
    assert n_contents % 8 == 0
    nar = head + nar_str(os.urandom(n_contents)) + tail
    assert len(nar) == size
    return nar


def test_zstd_bomb_is_refused_without_memory_growth(small: FlywheelServer) -> None:
    admin = _bearer(small.admin_token)
    workers = processes_running(small.proc.pid, HTTP_WORKER)  # type: ignore[union-attr]
    assert len(workers) == 2
    for pid in workers:  # reset the peak-RSS counters where the kernel allows it
        reset_peak_rss(pid)
    before = {pid: peak_rss_kib(pid) for pid in workers}

    # A regular file that claims 1 TiB of contents, then 512 MiB of zeros, in ~16 KiB.
    prefix = b"".join(nar_str(s) for s in (b"nix-archive-1", b"(", b"type", b"regular",
                                            b"contents")) + (1 << 40).to_bytes(8, "little")
    bomb = zstd_bomb(prefix, 512 << 20)
    assert len(bomb) < 20_000
    name = f"{_sha(bomb)}.nar.zst"
    for _ in range(4):  # a new connection each: both workers get some
        snap = Snapshot(small)
        r = HTTP.put(f"{small.url}/main/nar/{name}", content=bomb, headers=admin)
        assert r.status_code in (400, 413), r.text  # past the size or the ratio limit
        assert "limit" in r.json()["message"]
        snap.assert_unchanged()
    grown = {pid: peak_rss_kib(pid) - before[pid] for pid in workers}
    assert max(grown.values()) < 48 * 1024, f"peak RSS grew by {grown} KiB"


def _rss_kib(pid: int) -> int:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    assert m
    return int(m.group(1))


def test_zstd_uploads_do_not_leak_worker_memory(env: Env) -> None:
    # A frame with a 128 MiB window (the most the server allows) and 32 MiB of compressible
    # contents: a valid NAR that Nix could have produced with a high compression level.
    head = b"".join(nar_str(s) for s in (b"nix-archive-1", b"(", b"type", b"regular",
                                          b"contents"))
    nar = head + nar_str(b"flywheel" * (4 << 20)) + nar_str(b")")
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=27)
    valid = Nar(nar, "zstd", zstandard.ZstdCompressor(compression_params=params).compress(nar))
    assert len(valid.body) < 64 * 1024
    # And a refused one: 16 KiB that expand to 64 MiB of a NAR that never ends.
    bomb = zstd_bomb(head + (1 << 40).to_bytes(8, "little"), 64 << 20)
    workers = processes_running(env.srv.proc.pid, HTTP_WORKER)  # type: ignore[union-attr]
    assert len(workers) == 2

    def total_rss() -> int:
        return sum(_rss_kib(pid) for pid in workers)

    # Warm up both workers (imports, allocator pools) before measuring.
    for _ in range(2):
        assert env.put_nar(valid).status_code == 200
    before = total_rss()
    for _ in range(4):
        assert env.put_nar(valid).status_code == 200
        r = HTTP.put(f"{env.url}/main/nar/{_sha(bomb)}.nar.zst", content=bomb,
                     headers=_bearer(env.admin))
        assert r.status_code == 400, r.text
    grown_mib = (total_rss() - before) // 1024
    # 4 x (32 + 64) MiB would be kept if each upload leaked what it decompressed.
    assert grown_mib < 64, f"HTTP workers grew by {grown_mib} MiB over 8 small uploads"


def test_nar_size_limit_is_exact(small: FlywheelServer) -> None:
    admin = _bearer(small.admin_token)
    # Exactly at the limit is fine; 8 bytes of NAR more are not, in any compression.
    at_limit = Nar.of(_nar_of_size(1 << 20), "none")
    r = HTTP.put(f"{small.url}/main/nar/{at_limit.file_name}", content=at_limit.body,
                 headers=admin)
    assert r.status_code == 200, r.text
    over_nar = _nar_of_size((1 << 20) + 8)
    for compression in ("zstd", "xz"):
        # Squeezable padding keeps the compressed file under the limit: only the NAR is over.
        over = Nar.of(over_nar[:-16 - 4096] + bytes(4096) + over_nar[-16:], compression)
        assert len(over.body) < 1 << 20
        snap = Snapshot(small)
        r = HTTP.put(f"{small.url}/main/nar/{over.file_name}", content=over.body,
                     headers=admin)
        assert r.status_code == 413, r.text
        assert "limit" in r.json()["message"]
        snap.assert_unchanged()
    # An uncompressed file announced larger than the limit is refused before reading.
    plain = Nar.of(over_nar, "none")
    snap = Snapshot(small)
    r = HTTP.put(f"{small.url}/main/nar/{plain.file_name}", content=plain.body, headers=admin)
    assert r.status_code == 413, r.text
    assert set(r.json()) == ERROR_KEYS
    snap.assert_unchanged()


def test_zstd_skippable_frames_cannot_bypass_the_size_limit(small: FlywheelServer,
                                                            tmp_path: Path) -> None:
    nar = _make_nar(tmp_path)
    skippable = b"\x50\x2a\x4d\x18" + (1 << 20).to_bytes(4, "little") + bytes(1 << 20)
    body = zstandard.ZstdCompressor(write_checksum=True).compress(nar) + skippable * 3
    n = Nar(nar, "zstd", body)
    assert len(n.body) > 3 << 20 > 1 << 20 > len(n.nar)
    headers = _bearer(small.admin_token)
    # With a Content-Length the same bytes are refused up front.
    snap = Snapshot(small)
    r = HTTP.put(f"{small.url}/main/nar/{n.file_name}", content=n.body, headers=headers)
    assert r.status_code == 413, r.text

    def chunks() -> Iterator[bytes]:  # chunked transfer encoding: no length to check
        for i in range(0, len(body), 1 << 16):
            yield body[i:i + (1 << 16)]

    r = HTTP.put(f"{small.url}/main/nar/{n.file_name}", content=chunks(), headers=headers)
    assert r.status_code in (400, 413), f"{r.status_code}: stored {snap.new_blobs()}"
    snap.assert_unchanged()


def test_incompressible_nar_within_the_limit_is_accepted(small: FlywheelServer) -> None:
    n = Nar.of(_nar_of_size(1 << 20), "zstd")
    assert len(n.body) > len(n.nar)  # zstd's framing on random bytes
    r = HTTP.put(f"{small.url}/main/nar/{n.file_name}", content=n.body,
                 headers=_bearer(small.admin_token))
    assert r.status_code == 200, r.text


# ---------------------------------------------------------------- narinfo uploads


def _narinfo_cases(n: Nar, other: Nar, never: Nar, h: str) -> dict[str, str | bytes]:
    good = _narinfo(n, h)
    wrong_hash = "sha256:" + _sha(b"something else")
    return {
        "missing StorePath": _narinfo(n, h, StorePath=None),
        "missing URL": _narinfo(n, h, URL=None),
        "missing NarHash": _narinfo(n, h, NarHash=None),
        "missing NarSize": _narinfo(n, h, NarSize=None),
        "missing Compression (means bzip2)": _narinfo(n, h, Compression=None),
        "empty body": "",
        "no final newline": good[:-1],
        "not Key: value": good + "garbage\n",
        "duplicate NarSize": good + f"NarSize: {len(n.nar)}\n",
        "control character": good.replace("References: ", "References: \x01"),
        "not UTF-8": good.encode() + b"System: \xff\n",
        "NarHash bad base32": _narinfo(n, h, NarHash="sha256:" + "e" * 52),
        "NarHash wrong length": _narinfo(n, h, NarHash=n.nar_hash[:-1]),
        "NarHash md5": _narinfo(n, h, NarHash="md5:" + "0" * 32),
        "NarHash of other bytes": _narinfo(n, h, NarHash=wrong_hash),
        "NarHash of the compressed file": _narinfo(n, h, NarHash=f"sha256:{n.file_hash}"),
        "NarSize negative": _narinfo(n, h, NarSize="-1"),
        "NarSize zero": _narinfo(n, h, NarSize="0"),
        "NarSize off by one": _narinfo(n, h, NarSize=str(len(n.nar) + 1)),
        "NarSize not a number": _narinfo(n, h, NarSize="12k"),
        "NarSize with sign": _narinfo(n, h, NarSize=f"+{len(n.nar)}"),
        "FileSize negative": _narinfo(n, h, FileSize="-5"),
        "FileSize mismatch": _narinfo(n, h, FileSize=str(len(n.body) - 1)),
        "FileHash mismatch": _narinfo(n, h, FileHash=wrong_hash),
        "StorePath outside the store": _narinfo(n, h, StorePath=f"/tmp/{h}-edge"),
        "StorePath bad name": _narinfo(n, h, StorePath=f"/nix/store/{h}-bad/name"),
        "StorePath dot name": _narinfo(n, h, StorePath=f"/nix/store/{h}-..edge"),
        "StorePath short hash": _narinfo(n, h, StorePath=f"/nix/store/{h[:31]}-edge"),
        "StorePath of another hash": _narinfo(n, _hash_part()),
        "Reference malformed": _narinfo(n, h, References="not-a-store-path"),
        "Reference doubled space": _narinfo(n, h, References=f"{h}-edge  {h}-edge"),
        "Deriver malformed": _narinfo(n, h, Deriver="x.drv"),
        "Sig malformed": good + "Sig: no-colon\n",
        "CA malformed": good + "CA: sha256:abc\n",
        "URL of a NAR never uploaded": _narinfo(n, h, URL=never.url),
        "URL of another NAR (same hashes claimed)": _narinfo(n, h, URL=other.url),
        "Compression mismatch": _narinfo(n, h, Compression="xz"),
        "Compression unknown": _narinfo(n, h, Compression="br"),
        "URL with ..": _narinfo(n, h, URL=f"nar/../nar/{n.file_name}"),
        "URL with encoded ..": _narinfo(n, h, URL=f"nar/%2e%2e/nar/{n.file_name}"),
        "URL absolute": _narinfo(n, h, URL=f"/nar/{n.file_name}"),
        "URL full http": _narinfo(n, h, URL=f"http://evil.example/nar/{n.file_name}"),
        "URL backslash": _narinfo(n, h, URL=f"nar\\{n.file_name}"),
        "URL outside nar/": _narinfo(n, h, URL=n.file_name),
        "URL with query": _narinfo(n, h, URL=n.url + "?x=1"),
    }


def test_malformed_or_mismatched_narinfo_is_refused(env: Env, tmp_path: Path) -> None:
    n = Nar.of(_make_nar(tmp_path), "zstd")
    other = Nar.of(_make_nar(tmp_path), "zstd")
    never = Nar.of(_make_nar(tmp_path), "zstd")
    for x in (n, other):
        assert env.put_nar(x).status_code == 200
    snap = Snapshot(env.srv)
    h = _hash_part()
    wrong: list[str] = []
    for case, text in _narinfo_cases(n, other, never, h).items():
        r = env.put_narinfo(h, text)
        if r.status_code != 400 or set(r.json()) != ERROR_KEYS:
            wrong.append(f"{case}: {r.status_code} {r.text}")
        if env.get_narinfo(h).status_code != 404:
            wrong.append(f"{case}: the path became visible")
            break
    assert not wrong, "\n".join(wrong)
    snap.assert_unchanged()
    # The control: the same server takes the good narinfo, under exactly that name.
    assert env.put_narinfo(h, _narinfo(n, h)).status_code == 200
    assert env.get_narinfo(h).status_code == 200


def test_narinfo_before_its_nar_is_refused_then_accepted(env: Env, tmp_path: Path) -> None:
    n = Nar.of(_make_nar(tmp_path), "xz")
    h = _hash_part()
    r = env.put_narinfo(h, _narinfo(n, h))
    assert r.status_code == 400
    assert "upload the NAR first" in r.json()["message"]
    assert env.get_narinfo(h).status_code == 404
    # An uploaded NAR is not visible through any cache until a narinfo names it.
    assert env.put_nar(n).status_code == 200
    assert HTTP.get(f"{env.url}/main/{n.url}").status_code == 404
    assert HTTP.head(f"{env.url}/main/{n.url}").status_code == 404
    assert env.put_narinfo(h, _narinfo(n, h)).status_code == 200
    assert HTTP.get(f"{env.url}/main/{n.url}").content == n.body


def _padded(text: str, total: int) -> str:
    """``text`` grown to ``total`` bytes with foreign signatures (legal, and kept)."""
    i = 0
    while len(text) < total - 200:
        text += f"Sig: other-{i}:{'A' * 86}==\n"
        i += 1
    pad = total - len(text) - len("Sig: z:\n")
    return text + f"Sig: z:{'B' * pad}\n"


def test_oversize_narinfo_is_413(env: Env, tmp_path: Path) -> None:
    n = Nar.of(_make_nar(tmp_path), "zstd")
    assert env.put_nar(n).status_code == 200
    h = _hash_part()
    base = _narinfo(n, h)

    def padded(total: int) -> str:
        return _padded(base, total)

    too_big = padded(64 * 1024 + 1)
    assert len(too_big.encode()) == 64 * 1024 + 1
    snap = Snapshot(env.srv)
    for body in (too_big, too_big + "x" * (4 << 20)):
        r = env.put_narinfo(h, body)
        assert r.status_code == 413, r.text
        assert set(r.json()) == ERROR_KEYS
        assert env.get_narinfo(h).status_code == 404
    snap.assert_unchanged()
    at_limit = padded(64 * 1024)
    assert len(at_limit.encode()) == 64 * 1024
    r = env.put_narinfo(h, at_limit)
    assert r.status_code == 200, r.text
    assert env.get_narinfo(h).status_code == 200


def test_narinfo_at_the_size_limit_does_not_break_key_rotation(env: Env,
                                                               tmp_path: Path) -> None:
    n = Nar.of(_make_nar(tmp_path), "zstd")
    assert env.put_nar(n).status_code == 200
    h = _hash_part()
    text = _padded(_narinfo(n, h), 64 * 1024)
    assert env.put_narinfo(h, text, cache="rotating").status_code == 200
    proc = env.srv.cli("cache", "configure", "rotating", "--regenerate-keypair", check=False)
    assert proc.returncode == 0, proc.stderr
    new_key = re.search(r"Public Key: ([^:\s]+):", proc.stdout)
    assert new_key is not None, proc.stdout
    served = env.get_narinfo(h, "rotating").text
    assert f"Sig: {new_key.group(1)}:" in served


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("path", [
    "/Main/nix-cache-info",
    "/MAIN/{h}.narinfo",
    "/" + "a" * 51 + "/nix-cache-info",
    "/_api/nix-cache-info",
    "/_api/{h}.narinfo",
    "/-main/nix-cache-info",
    "/.main/nix-cache-info",
    "/main/nix-cache-info/",
    "/main//{h}.narinfo",
    "/main/sub/{h}.narinfo",
])
def test_invalid_cache_name_or_shape_in_url_is_404(env: Env, path: str) -> None:
    url = env.url + path.format(h=_hash_part())
    for headers in ({}, _bearer(env.admin)):
        for method in ("GET", "HEAD", "PUT"):
            r = HTTP.request(method, url, headers=headers, content=b"" if method == "PUT"
                             else None)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            if method != "HEAD":
                assert set(r.json()) == ERROR_KEYS


def test_invalid_names_are_refused_and_no_name_can_shadow_a_route(env: Env) -> None:
    names = ["_api", "_ui", "_state", "Main", "a" * 51, ".x"]
    fine = ["z" * 50, "healthz", "metrics", "status", "api"]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda n: env.srv.cli("cache", "create", n, check=False),
                                [*names, *fine]))
    for name, proc in zip(names, results, strict=False):
        assert proc.returncode != 0, f"cache create {name!r} succeeded:\n{proc.stdout}"
        assert "invalid cache name" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    r = HTTP.get(f"{env.url}/_api/nix-cache-info", headers=_bearer(env.admin))
    assert r.status_code == 404, r.text
    # Names that spell a one-segment route are fine: /<name>/... never meets /healthz.
    for name, proc in zip(fine, results[len(names):], strict=True):
        assert proc.returncode == 0, proc.stderr
        assert HTTP.get(f"{env.url}/{name}/nix-cache-info").status_code == 200
    assert HTTP.get(f"{env.url}/healthz").status_code == 200
    assert HTTP.get(f"{env.url}/metrics").status_code == 200


@pytest.mark.parametrize("name", ["0" * 31, "0" * 33, "e" * 32, "A" * 32,
                                  "0" * 32 + "-hello", "0" * 31 + "_"])
def test_narinfo_name_must_be_32_nix_base32_characters(env: Env, tmp_path: Path,
                                                       name: str) -> None:
    url = f"{env.url}/main/{name}.narinfo"
    for method in ("GET", "PUT", "DELETE"):
        r = HTTP.request(method, url, headers=_bearer(env.admin),
                         content=b"x\n" if method == "PUT" else None)
        assert r.status_code == 400, (method, r.status_code, r.text)
        assert set(r.json()) == ERROR_KEYS
    head = HTTP.head(url)
    assert head.status_code == 400
    assert head.content == b""


def test_unknown_cache_is_indistinguishable_from_a_private_one(env: Env,
                                                               stored: Stored) -> None:
    h = stored.hash_part
    nar = stored.n.file_name
    routes = [("GET", f"{h}.narinfo"), ("HEAD", f"{h}.narinfo"), ("GET", "nix-cache-info"),
              ("GET", f"nar/{nar}"), ("PUT", f"nar/{nar}"), ("PUT", f"{h}.narinfo"),
              ("DELETE", f"{h}.narinfo")]
    for method, route in routes:
        def call(cache: str, token: str | None, method: str = method,
                 route: str = route) -> httpx.Response:
            return HTTP.request(method, f"{env.url}/{cache}/{route}",
                                headers=_bearer(token) if token else {},
                                content=b"x" if method == "PUT" else None)

        for token, status in ((None, 401), (env.puller, 403)):
            unknown, private = call("no-such-cache", token), call("alpha", token)
            assert unknown.status_code == private.status_code == status, \
                (method, route, token, unknown.text, private.text)
            if method != "HEAD":
                assert unknown.json()["message"].replace("no-such-cache", "X") == \
                    private.json()["message"].replace("alpha", "X")
            if status == 401:
                assert "www-authenticate" in unknown.headers
        # Only a caller with rights on that name learns that it does not exist.
        r = call("no-such-cache", env.admin)
        assert r.status_code == 404, (method, route, r.text)


# ---------------------------------------------------------------- authentication


def _secret(env: Env) -> str:
    return (env.srv.data_dir / "token-secret").read_text().strip()


ALL_MAIN = Grants((("main", CachePermission(r=True, w=True, d=True)),))


def test_bad_credentials_are_401_with_an_error_body(env: Env, tmp_path: Path,
                                                    stored: Stored) -> None:
    now = int(time.time())
    expired, _ = TokenSigner(_secret(env), clock=lambda: now - 3600).mint("late", ALL_MAIN, 60)
    future, _ = TokenSigner(_secret(env), clock=lambda: now + 3600).mint("early", ALL_MAIN,
                                                                         3600)
    foreign, _ = TokenSigner(new_secret()).mint("mallory", ALL_MAIN, 3600)
    unsigned = jwt.encode({"sub": "mallory", **ALL_MAIN.to_claims()}, None, algorithm="none")
    no_sub = jwt.encode({**ALL_MAIN.to_claims(), "exp": now + 60},
                        base64.b64decode(_secret(env)), algorithm="HS256")
    bad_claim = jwt.encode({"sub": "x", "https://jwt.attic.rs/v1": {"caches": ["main"]}},
                           base64.b64decode(_secret(env)), algorithm="HS256")
    header_values = {
        "garbage bearer": "Bearer not-a-token",
        "bearer with a truncated real token": f"Bearer {env.admin[:-3]}",
        "bearer signed with another secret": f"Bearer {foreign}",
        "alg none": f"Bearer {unsigned}",
        "expired an hour ago": f"Bearer {expired}",
        "not valid for an hour": f"Bearer {future}",
        "no sub claim": f"Bearer {no_sub}",
        "malformed permission claim": f"Bearer {bad_claim}",
        "basic without password": "Basic " + base64.b64encode(b"user:").decode(),
        "basic without colon": "Basic " + base64.b64encode(env.admin.encode()).decode(),
        "basic not base64": "Basic !!!!",
        "basic with a wrong token": "Basic " + base64.b64encode(b"u:nope").decode(),
        "bearer without token": "Bearer",
        "digest scheme": 'Digest username="admin"',
        "token scheme": f"Token {env.admin}",
    }
    n = Nar.of(_make_nar(tmp_path), "zstd")
    snap = Snapshot(env.srv)
    h = _hash_part()
    wrong: list[str] = []
    for what, value in header_values.items():
        for method, route, body in (("GET", f"{stored.hash_part}.narinfo", None),
                                    ("GET", "nix-cache-info", None),
                                    ("PUT", f"nar/{n.file_name}", n.body),
                                    ("PUT", f"{h}.narinfo", _narinfo(n, h).encode())):
            r = HTTP.request(method, f"{env.url}/main/{route}", content=body,
                             headers={"Authorization": value})
            try:
                payload = r.json()
            except ValueError:
                payload = None
            if r.status_code != 401 or not isinstance(payload, dict) or \
                    set(payload) != ERROR_KEYS or payload["code"] != 401 or \
                    "www-authenticate" not in r.headers:
                wrong.append(f"{what} {method} {route}: {r.status_code} {r.text}")
    assert not wrong, "\n".join(wrong)
    snap.assert_unchanged()
    assert env.get_narinfo(h).status_code == 404
    r = HTTP.get(f"{env.url}/main/nix-cache-info",
                 headers={"Authorization": f"Bearer {expired}"})
    assert "expired" in r.json()["message"]
    # The control: the real admin token in the same two spellings works.
    assert HTTP.get(f"{env.url}/main/nix-cache-info", headers=_bearer(env.admin)).is_success
    assert HTTP.get(f"{env.url}/main/nix-cache-info", auth=("x", env.admin)).is_success


def test_rights_are_per_cache_and_per_verb(env: Env, tmp_path: Path,
                                           stored: Stored) -> None:
    n = Nar.of(_make_nar(tmp_path), "zstd")
    h = _hash_part()
    text = _narinfo(n, h).encode()
    snap = Snapshot(env.srv)

    def put(cache: str, route: str, body: bytes, token: str | None) -> int:
        return HTTP.put(f"{env.url}/{cache}/{route}", content=body,
                        headers=_bearer(token) if token else {}).status_code

    for route, body in ((f"nar/{n.file_name}", n.body), (f"{h}.narinfo", text),
                        ("nix-cache-info", b"StoreDir: /nix/store\n")):
        assert put("main", route, body, None) == 401, route
        assert put("main", route, body, env.puller) == 403, route          # pull-only
        assert put("main", route, body, env.deleter) == 403, route         # delete-only
        assert put("alpha", route, body, env.pusher) == 403, route         # push on main
        assert put("main", route, body, env.alpha_pusher) == 403, route    # push on alpha
    snap.assert_unchanged()
    # Reading: a push token for main may read main, not private alpha.
    assert HTTP.get(f"{env.url}/alpha/nix-cache-info",
                    headers=_bearer(env.pusher)).status_code == 403
    assert HTTP.get(f"{env.url}/alpha/nix-cache-info",
                    headers=_bearer(env.alpha_pusher)).status_code == 200
    # The controls: the right token on the right cache works.
    assert put("main", f"nar/{n.file_name}", n.body, env.pusher) == 200
    assert put("main", f"{h}.narinfo", text, env.pusher) == 200
    assert put("alpha", f"{h}.narinfo", text, env.alpha_pusher) == 200

    # DELETE needs "d" on that cache.
    url = f"{env.url}/main/{h}.narinfo"
    assert HTTP.delete(url).status_code == 401
    for token in (env.puller, env.pusher, env.alpha_pusher):
        assert HTTP.delete(url, headers=_bearer(token)).status_code == 403
        assert env.get_narinfo(h).status_code == 200
    assert HTTP.delete(f"{env.url}/alpha/{h}.narinfo",
                       headers=_bearer(env.deleter)).status_code == 403
    assert HTTP.delete(url, headers=_bearer(env.deleter)).status_code == 204
    assert env.get_narinfo(h).status_code == 404
    assert env.get_narinfo(h, "alpha").status_code == 200


# ---------------------------------------------------------------- HTTP semantics


def test_head_narinfo_has_length_and_no_body(env: Env, stored: Stored) -> None:
    url = f"{env.url}/main/{stored.hash_part}.narinfo"
    get = HTTP.get(url)
    head = HTTP.head(url)
    assert get.status_code == head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) == len(get.content) > 0
    assert head.headers["content-type"] == "text/x-nix-narinfo"
    missing = HTTP.head(f"{env.url}/main/{_hash_part()}.narinfo")
    assert missing.status_code == 404
    assert missing.content == b""
    nar = HTTP.head(f"{env.url}/main/{stored.n.url}")
    assert nar.status_code == 200
    assert nar.content == b""
    assert int(nar.headers["content-length"]) == len(stored.n.body)


def test_range_requests_on_a_nar(env: Env, stored: Stored) -> None:
    url = f"{env.url}/main/{stored.n.url}"
    body = stored.n.body
    size = len(body)

    def get(value: str) -> httpx.Response:
        return HTTP.get(url, headers={"Range": value})

    full = HTTP.get(url)
    assert full.status_code == 200
    assert full.content == body
    assert full.headers["accept-ranges"] == "bytes"
    assert full.headers["content-type"] == "application/x-nix-nar"
    for value, start, end in (("bytes=0-9", 0, 9), ("bytes=-10", size - 10, size - 1),
                              ("bytes=5-", 5, size - 1), (f"bytes={size - 1}-", size - 1,
                                                          size - 1),
                              (f"bytes=0-{size * 10}", 0, size - 1),
                              (f"bytes=-{size * 10}", 0, size - 1)):
        r = get(value)
        assert r.status_code == 206, (value, r.status_code)
        assert r.headers["content-range"] == f"bytes {start}-{end}/{size}", value
        assert r.content == body[start:end + 1], value
        assert int(r.headers["content-length"]) == end - start + 1
    for value in (f"bytes={size}-", f"bytes={size + 100}-{size + 200}", "bytes=-0"):
        r = get(value)
        assert r.status_code == 416, (value, r.status_code)
        assert r.headers["content-range"] == f"bytes */{size}"
    for value in ("bytes=0-4,10-14", "bytes=0-4, 10-14", "items=0-5", "bytes=x-y",
                  "bytes=-"):
        r = get(value)
        assert r.status_code == 200, (value, r.status_code)
        assert r.content == body
        assert "content-range" not in r.headers


@pytest.mark.parametrize("method,route,allow", [
    ("POST", "{h}.narinfo", "GET, HEAD, PUT, DELETE"),
    ("PATCH", "{h}.narinfo", "GET, HEAD, PUT, DELETE"),
    ("POST", "nix-cache-info", "GET, HEAD, PUT"),
    ("DELETE", "nix-cache-info", "GET, HEAD, PUT"),
    ("POST", "{nar}", "GET, HEAD, PUT"),
    ("DELETE", "{nar}", "GET, HEAD, PUT"),
])
def test_methods_not_allowed_are_405_with_allow(env: Env, stored: Stored, method: str,
                                                route: str, allow: str) -> None:
    path = route.format(h=stored.hash_part, nar=stored.n.url)
    r = HTTP.request(method, f"{env.url}/main/{path}", headers=_bearer(env.admin),
                     content=b"x")
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == allow
    assert set(r.json()) == ERROR_KEYS
    # Nothing happened to the stored path.
    assert env.get_narinfo(stored.hash_part).status_code == 200
    assert HTTP.get(f"{env.url}/main/{stored.n.url}").content == stored.n.body


def test_health_and_readiness(env: Env) -> None:
    r = HTTP.get(f"{env.url}/healthz")
    assert r.status_code == 200
    r = HTTP.get(f"{env.url}/readyz")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"ready": True}
    r = HTTP.get(f"{env.url}/no-such-route")
    assert r.status_code == 404
    assert set(r.json()) == ERROR_KEYS


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if m:
            have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            if all(have.get(k) == v for k, v in labels.items()):
                total += float(m.group(2))
    return total


def test_metrics_count_across_workers(env: Env, stored: Stored) -> None:
    # Workers write their counts in batches (metrics.FLUSH_SECONDS): what earlier tests
    # counted lands first, so that it is not taken for this test's.
    time.sleep(3 * metrics.FLUSH_SECONDS)
    before = HTTP.get(f"{env.url}/metrics").text
    hits, misses = 12, 3
    for _ in range(hits):  # a new connection each (HTTP's default), so both workers take some
        assert HTTP.get(f"{env.url}/main/{stored.hash_part}.narinfo").status_code == 200
    for _ in range(misses):
        assert HTTP.get(f"{env.url}/main/{_hash_part()}.narinfo").status_code == 404

    def delta(name: str, **labels: str) -> float:
        return _metric(after.text, name, **labels) - _metric(before, name, **labels)

    # The other worker's batch may land a moment after a scrape.
    deadline = time.monotonic() + 5
    while True:
        after = HTTP.get(f"{env.url}/metrics")
        assert after.status_code == 200
        assert after.headers["content-type"].startswith("text/plain")
        seen = (delta("flywheel_nix_narinfo_lookups_total", cache="main", result="hit"),
                delta("flywheel_nix_narinfo_lookups_total", cache="main", result="miss"),
                delta("flywheel_http_requests_total", route="narinfo", method="GET",
                      status="200"),
                delta("flywheel_http_requests_total", route="narinfo", method="GET",
                      status="404"))
        if seen == (hits, misses, hits, misses) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert seen == (hits, misses, hits, misses)
    # Both worker processes have written counters that this one scrape summed.
    files = [f for f in os.listdir(env.srv.data_dir / "run" / "metrics")
             if f.startswith("counter_")]
    assert len(files) >= 2, files


def test_unknown_cache_names_never_become_metric_labels(env: Env, stored: Stored) -> None:
    names = [f"nosuch{i}-{os.getpid()}" for i in range(3)]
    for name in names:
        for token in (None, env.admin, env.puller):
            headers = _bearer(token) if token else {}
            HTTP.get(f"{env.url}/{name}/{stored.hash_part}.narinfo", headers=headers)
            HTTP.head(f"{env.url}/{name}/{stored.hash_part}.narinfo", headers=headers)
            HTTP.get(f"{env.url}/{name}/{stored.n.url}", headers=headers)
            HTTP.get(f"{env.url}/{name}/nix-cache-info", headers=headers)
            HTTP.put(f"{env.url}/{name}/{stored.n.url}", content=stored.n.body,
                     headers=headers)
            HTTP.put(f"{env.url}/{name}/{stored.hash_part}.narinfo", content=b"x\n",
                     headers=headers)
    text = HTTP.get(f"{env.url}/metrics").text
    assert 'cache="main"' in text
    assert "nosuch" not in text


def test_client_chosen_methods_never_become_metric_labels(env: Env) -> None:
    methods = [f"PROBE{i}X{os.getpid()}" for i in range(3)]
    for method in methods:
        r = HTTP.request(method, f"{env.url}/main/nix-cache-info")
        assert r.status_code == 405
    text = HTTP.get(f"{env.url}/metrics").text
    assert 'route="cache-info"' in text  # the control: these requests are counted at all
    leaked = [m for m in methods if m in text]
    assert not leaked, f"method labels taken from clients: {leaked}"


# ---------------------------------------------------------------- idempotence and races


def test_same_nar_put_twice_is_stored_once(env: Env, tmp_path: Path) -> None:
    n = Nar.of(_make_nar(tmp_path), "zstd")
    snap = Snapshot(env.srv)
    assert env.put_nar(n).status_code == 200
    assert env.put_nar(n).status_code == 200
    assert len(snap.new_blobs()) == 1
    assert _tmp(env.srv) == []
    h = _hash_part()
    assert env.put_narinfo(h, _narinfo(n, h)).status_code == 200
    assert HTTP.get(f"{env.url}/main/{n.url}").content == n.body


def test_narinfo_put_twice_keeps_the_first(env: Env, tmp_path: Path) -> None:
    n = Nar.of(_make_nar(tmp_path), "zstd")
    h = _hash_part()
    env.upload(n, h, System="x86_64-linux", Deriver=f"{_hash_part()}-first.drv")
    first = env.get_narinfo(h).text
    assert "System: x86_64-linux\n" in first
    again = env.put_narinfo(h, _narinfo(n, h, System="x86_64-linux",
                                        Deriver=first.split("Deriver: ")[1].split("\n")[0]))
    assert again.status_code == 200
    other = env.put_narinfo(h, _narinfo(n, h, System="aarch64-linux",
                                        Deriver=f"{_hash_part()}-second.drv"))
    assert other.status_code == 200
    assert env.get_narinfo(h).text == first


def test_same_nar_in_two_compressions_is_stored_once(env: Env, tmp_path: Path) -> None:
    nar = _make_nar(tmp_path, 50_000)
    zst, xz = Nar.of(nar, "zstd"), Nar.of(nar, "xz")
    snap = Snapshot(env.srv)
    assert env.put_nar(zst).status_code == 200
    assert env.put_nar(xz).status_code == 200
    assert len(snap.new_blobs()) == 1
    # A narinfo naming the xz file is accepted and served pointing at the stored file.
    h = _hash_part()
    assert env.put_narinfo(h, _narinfo(xz, h)).status_code == 200
    text = env.get_narinfo(h).text
    url = re.search(r"^URL: (\S+)$", text, re.M)
    assert url is not None
    served = HTTP.get(f"{env.url}/main/{url.group(1)}")
    assert served.status_code == 200
    compression = re.search(r"^Compression: (\S+)$", text, re.M)
    assert compression is not None
    file_hash = re.search(r"^FileHash: sha256:(\S+)$", text, re.M)
    assert file_hash is not None and file_hash.group(1) == _sha(served.content)
    assert f"FileSize: {len(served.content)}\n" in text
    decoded = (zstandard.ZstdDecompressor().decompressobj().decompress(served.content)
               if compression.group(1) == "zstd" else lzma.decompress(served.content))
    assert decoded == nar
    assert len(snap.new_blobs()) == 1


def test_concurrent_puts_of_one_nar(env: Env, tmp_path: Path) -> None:
    n = Nar.of(_make_nar(tmp_path, 2_000_000), "zstd")
    clients = 16
    barrier = threading.Barrier(clients)
    snap = Snapshot(env.srv)

    def put(_: int) -> int:
        def body() -> Iterator[bytes]:
            yield n.body[:-100]
            barrier.wait(timeout=30)  # every upload is in flight before any finishes
            yield n.body[-100:]

        with httpx.Client(timeout=60) as client:
            return client.put(f"{env.url}/main/nar/{n.file_name}", content=body(),
                              headers=_bearer(env.pusher)).status_code

    with ThreadPoolExecutor(clients) as pool:
        statuses = list(pool.map(put, range(clients)))
    assert statuses == [200] * clients
    assert len(snap.new_blobs()) == 1
    assert _tmp(env.srv) == []
    h = _hash_part()
    assert env.put_narinfo(h, _narinfo(n, h), token=env.pusher).status_code == 200
    assert HTTP.get(f"{env.url}/main/{n.url}").content == n.body

"""Crashes mid-upload, restarts, and memory use while streaming large NARs."""

from __future__ import annotations

import contextlib
import hashlib
import signal
import threading
import time
from collections.abc import Iterator

import httpx

from flywheel.nix.base32 import encode as b32
from tests.support.hostile import peak_rss_kib, processes_running
from tests.support.server import FlywheelServer

CHUNK = 1 << 20


def _pad(n: int) -> bytes:
    return b"\0" * ((8 - n % 8) % 8)


def _string(s: bytes) -> bytes:
    return len(s).to_bytes(8, "little") + s + _pad(len(s))


def big_nar(size: int) -> tuple[Iterator[bytes], str, str]:
    """A NAR holding one regular file of ``size`` pseudo-random bytes, streamed in chunks,
    plus the nix-base32 sha256 of the whole NAR (it is uncompressed, so file == NAR)."""
    head = b"".join(_string(t) for t in (b"nix-archive-1", b"(", b"type", b"regular",
                                         b"contents")) + size.to_bytes(8, "little")
    tail = _pad(size) + _string(b")")

    def chunks() -> Iterator[bytes]:
        yield head
        block = hashlib.sha512(b"seed").digest() * (CHUNK // 64)
        sent = 0
        while sent < size:
            n = min(CHUNK, size - sent)
            yield block[:n]
            sent += n
        yield tail

    h = hashlib.sha256()
    for c in chunks():
        h.update(c)
    return chunks(), b32(h.digest()), "sha256:" + b32(h.digest())


def test_large_upload_streams_without_buffering(server: FlywheelServer) -> None:
    size = 384 << 20
    body, file_hash, _ = big_nar(size)
    r = httpx.put(f"{server.url}/main/nar/{file_hash}.nar", content=body,
                  auth=("x", server.admin_token), timeout=120)
    assert r.status_code == 200, r.text
    assert server.proc is not None
    peaks = [peak_rss_kib(pid) for pid in
             processes_running(server.proc.pid, "flywheel.server.http_worker")]
    assert peaks, "no worker processes found"
    # A buffered upload would need at least the NAR's size; streaming stays far below.
    assert max(peaks) < 200 * 1024, f"worker peak RSS {max(peaks)} KiB"


def test_kill_during_upload_leaves_nothing_visible(server: FlywheelServer) -> None:
    size = 64 << 20
    chunks, file_hash, nar_hash = big_nar(size)
    sent = threading.Event()

    def slow() -> Iterator[bytes]:
        for i, c in enumerate(chunks):
            yield c
            if i == 8:
                sent.set()
                time.sleep(30)

    def upload() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.put(f"{server.url}/main/nar/{file_hash}.nar", content=slow(),
                      auth=("x", server.admin_token), timeout=60)

    t = threading.Thread(target=upload, daemon=True)
    t.start()
    assert sent.wait(30)
    time.sleep(0.5)
    leftovers = list((server.data_dir / "tmp").iterdir())
    assert leftovers, "the upload should be spooling to a temp file"
    server.stop(signal.SIGKILL)
    server.start()

    hash_part = "0" * 32
    narinfo = (f"StorePath: /nix/store/{hash_part}-big\nURL: nar/{file_hash}.nar\n"
               f"Compression: none\nNarHash: {nar_hash}\nNarSize: {size + 112}\n"
               "References: \n")
    r = httpx.put(f"{server.url}/main/{hash_part}.narinfo", content=narinfo,
                  auth=("x", server.admin_token))
    assert r.status_code == 400
    assert "has not been uploaded" in r.json()["message"]
    assert httpx.get(f"{server.url}/main/{hash_part}.narinfo").status_code == 404
    assert httpx.head(f"{server.url}/main/nar/{file_hash}.nar").status_code == 404
    assert not [b for b in (server.data_dir / "blobs").rglob("*") if b.is_file()]

    report = server.cli("fsck", "--grace", "0", check=False)
    assert report.returncode == 1
    assert "stale uploads found: 1" in report.stdout
    server.cli("fsck", "--grace", "0", "--repair")
    assert not list((server.data_dir / "tmp").iterdir())
    assert "clean" in server.cli("fsck", "--grace", "0").stdout

"""Limits that hold whatever a client claims: decompression bounded by what the server
allows (not by a digest's say-so), the Bazel size bound under concurrent uploaders in
several processes, a usage total that equals what is stored, and NARs that expand past the
configured ratio refused early."""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import zstandard

from flywheel.bazel.reapi import re_pb2
from flywheel.bazel.reapi_grpc import re_grpc
from tests.support.cacheworld import narinfo_for
from tests.support.hostile import (
    nar_str,
    peak_rss_kib,
    processes_running,
    reset_peak_rss,
    zstd_bomb,
)
from tests.support.server import FlywheelServer, run_cli

HTTP = httpx.Client(timeout=60)
S = grpc.StatusCode
MiB = 1 << 20
BOUND = 4 * MiB


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlywheelServer]:
    srv = FlywheelServer(tmp_path_factory.mktemp("bounded") / "data",
                         extra_args=["--bazel-max-size", "4MiB"]).start()
    try:
        yield srv
    finally:
        srv.stop()


def _admin(srv: FlywheelServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {srv.admin_token}"}


def _digest(data: bytes) -> Any:
    return re_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def _stored_cas_bytes(srv: FlywheelServer) -> int:
    root = srv.data_dir / "blobs" / "cas"
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def _usage(srv: FlywheelServer) -> int:
    return int(HTTP.get(f"{srv.url}/status", headers=_admin(srv)).json()
               ["bazel_size"]["used_bytes"])


def _consistent(srv: FlywheelServer) -> None:
    report = run_cli(srv.data_dir, "fsck", "--grace", "1h", check=False).stdout
    assert "Bazel usage total" not in report, report


def test_the_size_bound_holds_under_concurrent_uploaders_in_every_worker(
        bounded: FlywheelServer) -> None:
    def upload(n: int) -> int:
        statuses = 0
        with httpx.Client(timeout=60) as client:  # one connection each: both workers serve
            for i in range(25):
                data = f"{n}:{i}:".encode() + os.urandom(100 << 10)
                r = client.put(f"{bounded.url}/main/cas/{hashlib.sha256(data).hexdigest()}",
                               content=data, headers=_admin(bounded))
                assert r.status_code == 200, r.text
                statuses += 1
        return statuses

    with ThreadPoolExecutor(12) as pool:
        assert sum(pool.map(upload, range(12))) == 300
    assert _stored_cas_bytes(bounded) <= BOUND
    assert _usage(bounded) <= BOUND
    _consistent(bounded)


def test_destroying_caches_gives_their_bytes_back(bounded: FlywheelServer) -> None:
    for round_ in range(6):
        name = f"doomed-{round_}"
        bounded.cli("cache", "create", name)
        output = os.urandom(200_000)
        assert HTTP.put(f"{bounded.url}/{name}/cas/{hashlib.sha256(output).hexdigest()}",
                        content=output, headers=_admin(bounded)).status_code == 200
        result = re_pb2.ActionResult()
        result.output_files.add(path="o", digest=_digest(output))
        for i in range(20):
            action = hashlib.sha256(f"{round_}-{i}".encode()).hexdigest()
            assert HTTP.put(f"{bounded.url}/{name}/ac/{action}",
                            content=result.SerializeToString(),
                            headers=_admin(bounded)).status_code == 200
        bounded.cli("cache", "destroy", name, "--yes")
    _consistent(bounded)
    data = os.urandom(MiB)
    r = HTTP.put(f"{bounded.url}/main/cas/{hashlib.sha256(data).hexdigest()}", content=data,
                 headers=_admin(bounded))
    assert r.status_code == 200, r.text


def test_a_chunked_upload_past_the_bound_is_507(bounded: FlywheelServer) -> None:
    data = os.urandom(BOUND + 1)

    def chunks() -> Iterator[bytes]:  # chunked transfer encoding: no length to check first
        for i in range(0, len(data), MiB):
            yield data[i:i + MiB]

    r = HTTP.put(f"{bounded.url}/main/cas/{hashlib.sha256(data).hexdigest()}",
                 content=chunks(), headers=_admin(bounded))
    assert r.status_code == 507, r.text
    assert not list((bounded.data_dir / "tmp").iterdir())


def test_a_grpc_zstd_bomb_costs_no_memory(bounded: FlywheelServer) -> None:
    (grpc_pid,) = processes_running(bounded.proc.pid,  # type: ignore[union-attr]
                                    "flywheel.server.grpc.process")
    reset_peak_rss(grpc_pid)
    before = peak_rss_kib(grpc_pid)
    bomb = zstd_bomb(b"", 512 * MiB)
    assert len(bomb) < 20_000
    with grpc.insecure_channel(bounded.grpc_target) as channel:
        cas = re_grpc.ContentAddressableStorageStub(channel)
        metadata = [("authorization", f"Bearer {bounded.admin_token}")]
        Req = re_pb2.BatchUpdateBlobsRequest.Request
        # A digest claiming 1 TiB: the batch is over its size limit before anything is read.
        with pytest.raises(grpc.RpcError) as refused:
            cas.BatchUpdateBlobs(re_pb2.BatchUpdateBlobsRequest(instance_name="main", requests=[
                Req(digest=re_pb2.Digest(hash="0" * 64, size_bytes=1 << 40), data=bomb,
                    compressor=re_pb2.Compressor.ZSTD)]), metadata=metadata, timeout=60)
        assert refused.value.code() == S.INVALID_ARGUMENT
        # A digest within the limit: decompression stops at its size.
        reply = cas.BatchUpdateBlobs(re_pb2.BatchUpdateBlobsRequest(instance_name="main", requests=[
            Req(digest=re_pb2.Digest(hash="0" * 64, size_bytes=MiB), data=bomb,
                compressor=re_pb2.Compressor.ZSTD)]), metadata=metadata, timeout=60)
        assert reply.responses[0].status.code == S.INVALID_ARGUMENT.value[0]
    assert peak_rss_kib(grpc_pid) - before < 32 * 1024


def test_a_nar_expanding_past_the_ratio_limit_is_refused(tmp_path: Path) -> None:
    srv = FlywheelServer(tmp_path / "data",
                         env={"FLYWHEEL_CACHE_MAX_COMPRESSION_RATIO": "100"}, workers=1).start()
    try:
        prefix = b"".join(nar_str(s) for s in (b"nix-archive-1", b"(", b"type", b"regular",
                                               b"contents")) + (1 << 34).to_bytes(8, "little")
        bomb = zstd_bomb(prefix, 256 * MiB)
        file_hash_name, _ = narinfo_for("0" * 32, bomb, b"")
        r = HTTP.put(f"{srv.url}/main/nar/{file_hash_name}.zst", content=bomb,
                     headers=_admin(srv))
        assert r.status_code == 400, r.text
        assert "100 times its compressed size" in r.json()["message"]
        # An honest, very compressible NAR passes.
        nar = b"".join(nar_str(s) for s in (b"nix-archive-1", b"(", b"type", b"regular",
                                            b"contents", bytes(8 * MiB), b")"))
        packed = zstandard.ZstdCompressor().compress(nar)
        assert len(nar) > 100 * len(packed)
        name, _ = narinfo_for("0" * 32, packed, nar)
        assert HTTP.put(f"{srv.url}/main/nar/{name}.zst", content=packed,
                        headers=_admin(srv)).status_code == 200
    finally:
        srv.stop()


def _stalled_request(url: str, method: str, path: str, token: str, announced: int,
                     sent: bytes) -> socket.socket:
    """A client that announces ``announced`` bytes of body, sends ``sent`` and stops."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=15)
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
                 f"Authorization: Bearer {token}\r\nContent-Length: {announced}\r\n\r\n"
                 .encode() + sent)
    return sock


def _answer(sock: socket.socket) -> bytes:
    """The whole response: its head, and as much body as it says it has. (Granian closes
    such a connection only once the client sends more or closes, so that is not awaited.)"""
    got = b""
    try:
        while True:
            head, blank, body = got.partition(b"\r\n\r\n")
            length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
            if blank and length and len(body) >= int(length.group(1)):
                return got
            chunk = sock.recv(65536)
            if not chunk:
                return got
            got += chunk
    except TimeoutError:
        raise AssertionError(f"no whole answer in time; received {got[:300]!r}") from None
    finally:
        sock.close()


def test_a_body_that_stops_arriving_is_answered_408_and_holds_nothing(tmp_path: Path) -> None:
    srv = FlywheelServer(tmp_path / "data", workers=1, env={
        "FLYWHEEL_BODY_IDLE_TIMEOUT": "1", "FLYWHEEL_BLOCKING_THREADS": "2"}).start()
    try:
        token = srv.admin_token
        nar = b"".join(nar_str(s) for s in (b"nix-archive-1", b"(", b"type", b"regular",
                                            b"contents", os.urandom(MiB), b")"))
        name, _ = narinfo_for("1" * 32, nar, nar)
        # More stalled uploads than the server has blocking threads: without a limit they
        # would hold every thread, and every later upload would wait behind them for ever.
        stalled = [_stalled_request(srv.url, "PUT", f"/main/nar/{name}", token, len(nar),
                                    nar[:64 << 10]) for _ in range(3)]
        stalled.append(_stalled_request(srv.url, "POST", "/_state/stalled", token, 4096,
                                        b'{"version": 4,'))
        for i, sock in enumerate(stalled):
            answer = _answer(sock)
            assert answer.startswith(b"HTTP/1.1 408"), (i, answer[:200])
            assert b"no part of the request body arrived for 1 s" in answer
        assert not list((srv.data_dir / "tmp").iterdir())
        assert HTTP.get(f"{srv.url}/main/nar/{name}", headers=_admin(srv)).status_code == 404
        assert HTTP.get(f"{srv.url}/_state/stalled", headers=_admin(srv)).status_code in (
            204, 404)
        # The threads are free again: the same upload, sent whole, is stored.
        assert HTTP.put(f"{srv.url}/main/nar/{name}", content=nar,
                        headers=_admin(srv)).status_code == 200
    finally:
        srv.stop()

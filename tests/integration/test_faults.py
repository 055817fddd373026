"""Storage that loses, truncates or refuses content: the server fails closed (503/404 before
the first byte, 507 for a full disk, never a short 200 or a plain-text 500), leaves nothing
behind, and heals without a restart once the content is uploaded again or the fault clears.

The server's data directory is a small real filesystem (tmpfs) so that "full" and
"read-only" are the kernel's answers, not simulations."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from flywheel.bazel.reapi import bs_pb2, re_pb2
from flywheel.bazel.reapi_grpc import bs_grpc, re_grpc
from tests.support.cacheworld import nar_of, narinfo_for, nix_hash, random_hash_part
from tests.support.server import FlywheelServer, run_cli

S = grpc.StatusCode
HTTP = httpx.Client(timeout=30)
ERROR_KEYS = {"code", "error", "message"}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


def _digest(data: bytes) -> Any:
    return re_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


@dataclass
class Env:
    srv: FlywheelServer
    mount: Path
    admin: dict[str, str]
    channel: grpc.Channel

    @property
    def url(self) -> str:
        return self.srv.url

    def blob_file(self, kind: str, key: str) -> Path:
        return self.srv.data_dir / "blobs" / kind / key[:2] / key

    def push_path(self, contents: bytes) -> tuple[str, str, bytes]:
        nar = nar_of(contents)
        h = random_hash_part()
        name, narinfo = narinfo_for(h, nar, nar)
        assert HTTP.put(f"{self.url}/main/nar/{name}", content=nar,
                        headers=self.admin).status_code == 200
        assert HTTP.put(f"{self.url}/main/{h}.narinfo", content=narinfo,
                        headers=self.admin).status_code == 200
        return h, name, nar

    def leftovers(self) -> list[str]:
        return sorted(os.listdir(self.srv.data_dir / "tmp"))

    def metadata(self) -> list[tuple[str, str]]:
        return [("authorization", self.admin["Authorization"])]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    mount = tmp_path_factory.mktemp("small-disk")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=30m,mode=0700", "tmpfs", str(mount)],
                   check=True)
    try:
        srv = FlywheelServer(mount / "data").start()
        try:
            with grpc.insecure_channel(srv.grpc_target) as channel:
                yield Env(srv, mount, {"Authorization": f"Bearer {srv.admin_token}"},
                          channel)
        finally:
            srv.stop()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _json_error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == ERROR_KEYS
    return str(body["message"])


def test_a_truncated_nar_is_503_before_the_first_byte_and_an_upload_heals_it(env: Env) -> None:
    h, name, nar = env.push_path(os.urandom(200_000))
    stored = env.blob_file("nar", name.removesuffix(".nar"))
    with stored.open("r+b") as f:
        f.truncate(1000)
    _json_error(HTTP.get(f"{env.url}/main/nar/{name}"), 503)
    _json_error(HTTP.get(f"{env.url}/main/nar/{name}", headers={"Range": "bytes=0-99"}), 503)
    # Absent to a HEAD and to the narinfo, so `nix copy --to` uploads it again...
    assert HTTP.head(f"{env.url}/main/nar/{name}").status_code == 404
    assert HTTP.get(f"{env.url}/main/{h}.narinfo").status_code == 404
    # ...which restores it.
    assert HTTP.put(f"{env.url}/main/nar/{name}", content=nar, headers=env.admin
                    ).status_code == 200
    assert HTTP.get(f"{env.url}/main/nar/{name}").content == nar
    assert HTTP.get(f"{env.url}/main/{h}.narinfo").status_code == 200


def test_a_deleted_nar_is_restored_by_the_next_upload(env: Env) -> None:
    _, name, nar = env.push_path(os.urandom(5000))
    env.blob_file("nar", name.removesuffix(".nar")).unlink()
    _json_error(HTTP.get(f"{env.url}/main/nar/{name}"), 503)
    assert HTTP.put(f"{env.url}/main/nar/{name}", content=nar, headers=env.admin
                    ).status_code == 200
    assert HTTP.get(f"{env.url}/main/nar/{name}").content == nar


def test_a_lost_cas_blob_is_missing_its_action_a_miss_and_uploads_restore_it(env: Env) -> None:
    data = os.urandom(3000)
    d = _digest(data)
    assert HTTP.put(f"{env.url}/main/cas/{d.hash}", content=data, headers=env.admin
                    ).status_code == 200
    result = re_pb2.ActionResult()
    result.output_files.add(path="out", digest=d)
    action = hashlib.sha256(os.urandom(8)).hexdigest()
    assert HTTP.put(f"{env.url}/main/ac/{action}", content=result.SerializeToString(),
                    headers=env.admin).status_code == 200
    cas = re_grpc.ContentAddressableStorageStub(env.channel)
    ac = re_grpc.ActionCacheStub(env.channel)
    bs = bs_grpc.ByteStreamStub(env.channel)

    def missing() -> list[str]:
        reply = cas.FindMissingBlobs(re_pb2.FindMissingBlobsRequest(
            instance_name="main", blob_digests=[d]), metadata=env.metadata(), timeout=30)
        return [m.hash for m in reply.missing_blob_digests]

    def hit_over_grpc() -> bool:
        try:
            ac.GetActionResult(re_pb2.GetActionResultRequest(
                instance_name="main", action_digest=re_pb2.Digest(hash=action, size_bytes=1)),
                metadata=env.metadata(), timeout=30)
        except grpc.RpcError as e:
            assert e.code() == S.NOT_FOUND
            return False
        return True

    for reupload in ("http", "bytestream"):
        assert missing() == [] and hit_over_grpc()
        env.blob_file("cas", d.hash).unlink()
        # Never a dangling hit: the action is a miss on both protocols, the blob missing.
        assert HTTP.get(f"{env.url}/main/ac/{action}").status_code == 404
        assert not hit_over_grpc()
        assert missing() == [d.hash]
        assert HTTP.get(f"{env.url}/main/cas/{d.hash}").status_code == 404
        if reupload == "http":
            r = HTTP.put(f"{env.url}/main/cas/{d.hash}", content=data, headers=env.admin)
            assert r.status_code == 200
        else:
            name = f"main/uploads/{os.urandom(4).hex()}/blobs/{d.hash}/{d.size_bytes}"
            reply = bs.Write(iter([bs_pb2.WriteRequest(resource_name=name, data=data,
                                                       finish_write=True)]),
                             metadata=env.metadata(), timeout=30)
            assert reply.committed_size == len(data)
        assert HTTP.get(f"{env.url}/main/cas/{d.hash}").content == data
        assert HTTP.put(f"{env.url}/main/ac/{action}", content=result.SerializeToString(),
                        headers=env.admin).status_code == 200


def test_fsck_finds_missing_and_short_content_on_both_planes(env: Env) -> None:
    _, name, _ = env.push_path(os.urandom(4000))
    with env.blob_file("nar", name.removesuffix(".nar")).open("r+b") as f:
        f.truncate(10)
    data = os.urandom(1000)
    d = _digest(data)
    assert HTTP.put(f"{env.url}/main/cas/{d.hash}", content=data, headers=env.admin
                    ).status_code == 200
    env.blob_file("cas", d.hash).unlink()
    found = run_cli(env.srv.data_dir, "fsck", "--grace", "1h", check=False)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "NARs with missing or short content found: 1" in found.stdout
    assert "CAS blobs with missing or short content found: 1" in found.stdout
    repaired = run_cli(env.srv.data_dir, "fsck", "--grace", "1h", "--repair")
    assert "CAS blobs with missing or short content removed: 1" in repaired.stdout
    again = run_cli(env.srv.data_dir, "fsck", "--grace", "1h", check=False)
    assert "clean" in again.stdout, again.stdout


def _fill(env: Env, leave: int) -> Path:
    """Fill the small filesystem until about ``leave`` bytes are free."""
    stat = os.statvfs(env.mount)
    free = stat.f_bavail * stat.f_frsize
    filler = env.mount / "filler"
    with filler.open("wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def test_a_full_disk_is_507_leaves_nothing_and_recovers_without_a_restart(env: Env) -> None:
    filler = _fill(env, 1 << 20)
    try:
        nar = nar_of(os.urandom(3 << 20))
        name, _ = narinfo_for(random_hash_part(), nar, nar)
        assert "full" in _json_error(HTTP.put(f"{env.url}/main/nar/{name}", content=nar,
                                              headers=env.admin), 507)
        data = os.urandom(3 << 20)
        _json_error(HTTP.put(f"{env.url}/main/cas/{hashlib.sha256(data).hexdigest()}",
                             content=data, headers=env.admin), 507)
        h = random_hash_part()
        info = (f'{{"cache": "main", "store_path_hash": "{h}", '
                f'"store_path": "/nix/store/{h}-x", "references": [], '
                f'"nar_hash": "{nix_hash(nar)}", "nar_size": {len(nar)}}}')
        _json_error(HTTP.put(f"{env.url}/_api/v1/upload-path", content=nar,
                             headers={**env.admin, "X-Attic-Nar-Info": info}), 507)
        d = _digest(data)
        bs = bs_grpc.ByteStreamStub(env.channel)
        name = f"main/uploads/{os.urandom(4).hex()}/blobs/{d.hash}/{d.size_bytes}"
        chunks = [data[i:i + (64 << 10)] for i in range(0, len(data), 64 << 10)]
        with pytest.raises(grpc.RpcError) as refused:
            bs.Write(iter([bs_pb2.WriteRequest(resource_name=name if i == 0 else "",
                                               write_offset=i * (64 << 10), data=c,
                                               finish_write=i == len(chunks) - 1)
                           for i, c in enumerate(chunks)]),
                     metadata=env.metadata(), timeout=30)
        assert refused.value.code() == S.RESOURCE_EXHAUSTED, refused.value.details()
        assert env.leftovers() == [], "a failed upload left a temporary or spool file"
    finally:
        filler.unlink()
    # The fault cleared: the same uploads succeed, no restart.
    assert HTTP.put(f"{env.url}/main/cas/{hashlib.sha256(data).hexdigest()}", content=data,
                    headers=env.admin).status_code == 200
    assert HTTP.get(f"{env.url}/readyz").status_code == 200


def test_a_store_that_cannot_be_written_is_503_and_recovers(env: Env) -> None:
    # Behind the server's back, its upload directory stops being one. (Permissions would not
    # do: the tests run as root, whom they do not stop.)
    tmp = env.srv.data_dir / "tmp"
    tmp.rename(env.mount / "tmp-away")
    tmp.write_bytes(b"not a directory")
    try:
        data = os.urandom(10_000)
        _json_error(HTTP.put(f"{env.url}/main/cas/{hashlib.sha256(data).hexdigest()}",
                             content=data, headers=env.admin), 503)
        nar = nar_of(os.urandom(1000))
        name, _ = narinfo_for(random_hash_part(), nar, nar)
        _json_error(HTTP.put(f"{env.url}/main/nar/{name}", content=nar, headers=env.admin),
                    503)
        cas = re_grpc.ContentAddressableStorageStub(env.channel)
        reply = cas.BatchUpdateBlobs(re_pb2.BatchUpdateBlobsRequest(
            instance_name="main", requests=[re_pb2.BatchUpdateBlobsRequest.Request(
                digest=_digest(data), data=data)]), metadata=env.metadata(), timeout=30)
        assert reply.responses[0].status.code == S.UNAVAILABLE.value[0]
        assert HTTP.get(f"{env.url}/readyz").status_code == 503
    finally:
        tmp.unlink()
        (env.mount / "tmp-away").rename(tmp)
    assert HTTP.put(f"{env.url}/main/cas/{hashlib.sha256(data).hexdigest()}", content=data,
                    headers=env.admin).status_code == 200
    assert HTTP.get(f"{env.url}/readyz").status_code == 200

"""The data directory is private (it holds every cache's secret signing key), and malformed
inputs that once escaped as plain-text 500s get a JSON 400."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import grpc
import httpx
import pytest

from flywheel.bazel.reapi import bs_pb2
from flywheel.bazel.reapi_grpc import bs_grpc
from tests.support.server import FlywheelServer

HTTP = httpx.Client(timeout=30)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_directory_and_every_file_in_it_are_private(server: FlywheelServer) -> None:
    # Something in every kind of file: a NAR-less CAS blob and a resumable ByteStream spool.
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    assert HTTP.put(f"{server.url}/main/cas/{'e3b0c442' + '0' * 56}", content=b"x",
                    headers=admin).status_code == 400
    data = b"spooled"
    with grpc.insecure_channel(server.grpc_target) as channel:
        bs = bs_grpc.ByteStreamStub(channel)
        with pytest.raises(grpc.RpcError):
            bs.Write(iter([bs_pb2.WriteRequest(
                resource_name=f"main/uploads/u1/blobs/{'1' * 64}/100", data=data * 10000)]),
                metadata=[("authorization", f"Bearer {server.admin_token}")], timeout=30)
    assert _mode(server.data_dir) == 0o700
    files = [p for p in server.data_dir.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"flywheel.db", "flywheel.db-wal", "token-secret",
                                       "admin-token"}
    loose = {str(p.relative_to(server.data_dir)): oct(_mode(p)) for p in files
             if _mode(p) & 0o077}
    assert not loose
    dirs = {str(p.relative_to(server.data_dir)): oct(_mode(p))
            for p in server.data_dir.rglob("*") if p.is_dir() and _mode(p) & 0o077}
    assert not dirs


def test_an_existing_readable_data_directory_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = FlywheelServer(data).start()
    srv.stop()
    data.chmod(0o755)
    (data / "flywheel.db").chmod(0o644)
    srv.start()
    try:
        assert _mode(data) == 0o700
        assert _mode(data / "flywheel.db") == 0o600
        assert "was readable by others" in srv.log()
    finally:
        srv.stop()


@pytest.mark.parametrize("after", [
    "1" * 40,  # once an OverflowError
    base64.urlsafe_b64encode(json.dumps(["x", 10 ** 30]).encode()).decode(),
    base64.urlsafe_b64encode(json.dumps([[1], 1]).encode()).decode(),
    "not base64 at all!",
])
def test_malformed_cursors_are_400(server: FlywheelServer, after: str) -> None:
    order = "newest" if after.isdigit() else "name"
    r = HTTP.get(f"{server.url}/_api/v1/caches/main/objects",
                 params={"after": after, "order": order})
    assert r.status_code == 400, r.text
    assert r.json()["message"] == "invalid cursor"


@pytest.mark.parametrize("validity", ["999999999999y", "101y", "1q"])
def test_absurd_validities_are_400(server: FlywheelServer, validity: str) -> None:
    r = HTTP.post(f"{server.url}/_api/v1/tokens", json={"sub": "x", "validity": validity},
                  headers={"Authorization": f"Bearer {server.admin_token}"})
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"code", "error", "message"}

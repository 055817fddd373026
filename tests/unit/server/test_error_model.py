"""One error model: whatever a handler did not foresee becomes a JSON 500 (HTTP) or
INTERNAL (gRPC) carrying an error id that the log has too; never plain text, never
UNKNOWN."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from flywheel.app.bootstrap import first_start
from flywheel.app.services import Services
from flywheel.app.settings import Settings
from flywheel.bazel.reapi import re_pb2
from flywheel.bazel.reapi_grpc import re_grpc
from flywheel.server.app import FlywheelApp
from flywheel.server.grpc.server import build_server


class Boom(RuntimeError):
    pass


def boom(*_args: object, **_kwargs: object) -> None:
    raise Boom("something nobody foresaw")


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    s = Services.open(Settings(data_dir=tmp_path / "data"))
    first_start(s)
    yield s
    s.close()


def _logged_id(caplog: pytest.LogCaptureFixture, message: str) -> None:
    m = re.search(r"id ([0-9a-f]{16})", message)
    assert m, message
    assert any(m.group(1) in r.getMessage() and r.exc_info for r in caplog.records)


def test_http_routes_answer_the_unforeseen_with_a_json_500(
        services: Services, caplog: pytest.LogCaptureFixture) -> None:
    app = FlywheelApp(services)
    services.paths.missing = boom  # type: ignore[method-assign]
    services.paths.narinfo = boom  # type: ignore[method-assign]
    token = (services.settings.data_dir / "admin-token").read_text().strip()
    admin = {"Authorization": f"Bearer {token}"}

    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [await client.post("/_api/v1/get-missing-paths", headers=admin,
                                      json={"cache": "main", "store_path_hashes": []}),
                    await client.get(f"/main/{'0' * 32}.narinfo")]

    with caplog.at_level(logging.ERROR):
        for r in asyncio.run(calls()):
            assert r.status_code == 500
            assert r.headers["content-type"] == "application/json"
            body = r.json()
            assert body["code"] == 500 and body["error"] == "InternalServerError"
            assert "nobody foresaw" not in body["message"]
            _logged_id(caplog, body["message"])


def test_grpc_methods_answer_the_unforeseen_with_internal(
        services: Services, caplog: pytest.LogCaptureFixture) -> None:
    services.cas.find_missing = boom  # type: ignore[method-assign]

    async def call() -> grpc.aio.AioRpcError:
        built = build_server(services)
        server = built.server
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = re_grpc.ContentAddressableStorageStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await stub.FindMissingBlobs(re_pb2.FindMissingBlobsRequest(
                        instance_name="main"))
                return failed.value
        finally:
            await server.stop(None)

    with caplog.at_level(logging.ERROR):
        error = asyncio.run(call())
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "nobody foresaw" not in (error.details() or "")
    _logged_id(caplog, error.details() or "")

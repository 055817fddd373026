"""The real bazel client against a real flywheel server, over HTTP and gRPC."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.bazelenv import Bazel, BuildResult
from tests.support.server import FlywheelServer

pytestmark = pytest.mark.skipif(not Bazel.available(), reason="bazel-bootstrap not installed")

TRANSPORTS = ["http", "grpc"]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlywheelServer]:
    server = FlywheelServer(tmp_path_factory.mktemp("bazel-server") / "data").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bazel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bazel]:
    with Bazel(tmp_path_factory.mktemp("bazel-client")) as b:
        yield b


def remote(srv: FlywheelServer, transport: str, cache: str, token: str | None,
           upload: bool | None = None) -> list[str]:
    if transport == "http":
        return Bazel.remote_flags(f"{srv.url}/{cache}", token=token, upload=upload)
    return Bazel.remote_flags(f"grpc://{srv.grpc_target}", token=token, instance_name=cache,
                              upload=upload)


def clean_build(bazel: Bazel, flags: list[str], check: bool = True) -> BuildResult:
    bazel.clean()
    return bazel.build(*flags, check=check)


def status(srv: FlywheelServer) -> dict[str, object]:
    return httpx.get(f"{srv.url}/status",
                     headers={"Authorization": f"Bearer {srv.admin_token}"}).json()


def ac_entries(srv: FlywheelServer, cache: str) -> int:
    caches = status(srv)["caches"]
    assert isinstance(caches, dict)
    return int(caches[cache]["bazel"]["ac_entries"])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cold_build_populates_and_clean_rebuild_is_all_hits(srv: FlywheelServer, bazel: Bazel,
                                                            transport: str) -> None:
    cache = f"full-{transport}"
    srv.cli("cache", "create", cache, "--private")
    token = srv.mint("ci", "--push", cache)
    flags = remote(srv, transport, cache, token)

    cold = clean_build(bazel, flags)
    assert cold.summary is not None
    assert cold.summary.remote_cache_hit == 0
    assert cold.summary.executed == cold.summary.cacheable > 0
    assert "Writing to Remote Cache" not in cold.output
    assert ac_entries(srv, cache) == cold.summary.cacheable

    warm = clean_build(bazel, flags)
    assert warm.summary is not None
    assert warm.summary.remote_cache_hit == warm.summary.cacheable == cold.summary.cacheable
    assert warm.summary.executed == 0
    assert bazel.output("blob.bin").stat().st_size == 1 << 20
    # Hits are counted in batches, each worker's written within metrics.FLUSH_SECONDS.
    deadline = time.monotonic() + 5
    while (hits := status(srv)["caches"][cache]["bazel"]["ac_hits"]  # type: ignore[index]
           ) < warm.summary.cacheable and time.monotonic() < deadline:
        time.sleep(0.1)
    assert hits >= warm.summary.cacheable


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_read_only_token_gets_hits_and_stores_nothing(srv: FlywheelServer, bazel: Bazel,
                                                      transport: str) -> None:
    cache = f"ro-{transport}"
    srv.cli("cache", "create", cache, "--private")
    reader = srv.mint("reader", "--pull", cache)

    empty = clean_build(bazel, remote(srv, transport, cache, reader))
    assert empty.ok
    assert empty.summary is not None and empty.summary.remote_cache_hit == 0
    assert "Writing to Remote Cache" in empty.output
    assert ac_entries(srv, cache) == 0
    assert status(srv)["caches"][cache]["bazel"]["ac_bytes"] == 0  # type: ignore[index]

    writer = srv.mint("writer", "--push", cache)
    clean_build(bazel, remote(srv, transport, cache, writer))
    stored = ac_entries(srv, cache)
    assert stored > 0

    hits = clean_build(bazel, remote(srv, transport, cache, reader))
    assert hits.summary is not None
    assert hits.summary.remote_cache_hit == hits.summary.cacheable
    assert ac_entries(srv, cache) == stored

    # The README's read-only .bazelrc: no upload attempts, so no warnings either.
    other = f"ro-empty-{transport}"
    srv.cli("cache", "create", other, "--private")
    quiet = clean_build(bazel, remote(srv, transport, other, srv.mint("r2", "--pull", other),
                                      upload=False))
    assert quiet.ok
    assert "Remote Cache" not in quiet.output
    assert ac_entries(srv, other) == 0


def test_private_cache_refuses_anonymous_builds(srv: FlywheelServer, bazel: Bazel) -> None:
    srv.cli("cache", "create", "closed", "--private")
    over_http = clean_build(bazel, remote(srv, "http", "closed", None))
    assert over_http.ok  # Bazel runs locally when reads are refused...
    assert "401 Unauthorized" in over_http.output  # ...and says why
    assert over_http.summary is not None and over_http.summary.remote_cache_hit == 0
    assert ac_entries(srv, "closed") == 0

    over_grpc = clean_build(bazel, remote(srv, "grpc", "closed", None), check=False)
    assert not over_grpc.ok
    assert "UNAUTHENTICATED" in over_grpc.output


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_action_cache_is_isolated_between_caches(srv: FlywheelServer, bazel: Bazel,
                                                 transport: str) -> None:
    a, b = f"iso-a-{transport}", f"iso-b-{transport}"
    for name in (a, b):
        srv.cli("cache", "create", name, "--private")
    token_a = srv.mint("team-a", "--push", a)
    token_b = srv.mint("team-b", "--push", b)
    clean_build(bazel, remote(srv, transport, a, token_a))

    other = clean_build(bazel, remote(srv, transport, b, token_b))
    assert other.summary is not None and other.summary.remote_cache_hit == 0

    crossing = clean_build(bazel, remote(srv, transport, b, token_a), check=False)
    assert crossing.summary is None or crossing.summary.remote_cache_hit == 0
    assert "PERMISSION_DENIED" in crossing.output or "403 Forbidden" in crossing.output


def test_protocol_level_http_rules(srv: FlywheelServer) -> None:
    token = srv.admin_token
    auth = {"Authorization": f"Bearer {token}"}
    data = b"some output bytes"
    digest = hashlib.sha256(data).hexdigest()
    url = f"{srv.url}/main/cas/{digest}"
    assert httpx.put(url, content=b"tampered bytes!!!", headers=auth).status_code == 400
    assert httpx.get(url).status_code == 404
    assert httpx.put(url, content=data, headers=auth).status_code == 200
    assert httpx.get(url).content == data
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert httpx.get(f"{srv.url}/main/cas/{empty}").status_code == 200

    from flywheel.bazel.reapi import re_pb2

    result = re_pb2.ActionResult(exit_code=0, stdout_raw=b"hi")
    result.output_files.add(path="out/a", digest=re_pb2.Digest(hash=digest, size_bytes=len(data)))
    ac = f"{srv.url}/main/ac/{'a' * 64}"
    assert httpx.put(ac, content=result.SerializeToString(), headers=auth).status_code == 200
    as_json = httpx.get(ac, headers={"Accept": "application/json"}).json()
    assert as_json["outputFiles"][0]["digest"]["hash"] == digest
    assert httpx.get(ac).content == result.SerializeToString()

    dangling = re_pb2.ActionResult()
    dangling.output_files.add(path="out/b", digest=re_pb2.Digest(hash="b" * 64, size_bytes=3))
    ac2 = f"{srv.url}/main/ac/{'c' * 64}"
    # Its output is not in the cache: refused when written, so never a hit Bazel cannot use.
    refused = httpx.put(ac2, content=dangling.SerializeToString(), headers=auth)
    assert refused.status_code == 400 and "upload them first" in refused.json()["message"]
    assert httpx.get(ac2).status_code == 404
    assert httpx.put(ac2, content=b"\xff\xfe garbage", headers=auth).status_code == 400
    assert httpx.get(f"{srv.url}/main/ac/NOTAHASH").status_code == 400
    assert httpx.put(url, content=data, headers={"Authorization": "Bearer nonsense"}
                     ).status_code == 401


def test_size_bound_evicts_and_refuses_oversized_blobs(tmp_path: Path, bazel: Bazel) -> None:
    bound = 1536 << 10
    server = FlywheelServer(tmp_path / "small", extra_args=["--bazel-max-size", "1536KiB"])
    server.start()
    try:
        flags = remote(server, "http", "main", server.admin_token)
        first = clean_build(bazel, flags)
        assert first.ok
        used = status(server)["bazel_size"]
        assert used["max_bytes"] == bound  # type: ignore[index]
        assert 0 < used["used_bytes"] <= bound  # type: ignore[index]
        again = clean_build(bazel, flags)  # evicts older entries to fit new ones, stays green
        assert again.ok
        assert status(server)["bazel_size"]["used_bytes"] <= bound  # type: ignore[index]

        big = b"x" * (bound + 1)
        r = httpx.put(f"{server.url}/main/cas/{hashlib.sha256(big).hexdigest()}", content=big,
                      headers={"Authorization": f"Bearer {server.admin_token}"})
        assert r.status_code == 507
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        assert status(server)["bazel_size"]["used_bytes"] <= bound  # type: ignore[index]
    finally:
        server.stop()

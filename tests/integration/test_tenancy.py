"""Tenancy, from the route table: content is stored once, but no route or RPC lets a caller
read, list, probe or claim content through a cache that does not hold it, and every route
refuses callers without the right.

One server; caches ``a`` (private, holds the content), ``b`` (private, the pusher's own)
and ``pub`` (public). Callers: anonymous, a reader of ``a``, a pusher to ``b``. Every route
of ``flywheel.server.app.ENDPOINTS`` and every gRPC method must have a probe here, so a new
route cannot skip the check."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest

from flywheel.bazel.reapi import bs_pb2, re_pb2
from flywheel.bazel.reapi_grpc import bs_grpc, re_grpc
from flywheel.server.app import ENDPOINTS
from flywheel.server.grpc import services as grpc_services
from tests.support.cacheworld import nar_of, narinfo_for, nix_hash, random_hash_part
from tests.support.server import FlywheelServer

S = grpc.StatusCode
CALLERS = ("anonymous", "reader_a", "pusher_b")
CACHES = ("a", "b", "pub")
HTTP = httpx.Client(timeout=30)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _digest(data: bytes) -> Any:
    return re_pb2.Digest(hash=_sha(data), size_bytes=len(data))


@dataclass
class World:
    srv: FlywheelServer
    tokens: dict[str, str | None]
    path: str          # hash part of a store path held by ``a`` only
    nar_name: str      # its NAR file
    nar: bytes
    narinfo: bytes
    blob: bytes        # a CAS blob held by ``a`` only
    directory: bytes   # a Directory blob held by ``a`` only (GetTree's root)
    action: str        # an action-cache entry of ``a`` naming ``blob``
    channel: grpc.Channel

    def headers(self, caller: str) -> dict[str, str]:
        token = self.tokens[caller]
        return {"Authorization": f"Bearer {token}"} if token else {}

    def metadata(self, caller: str) -> list[tuple[str, str]]:
        token = self.tokens[caller]
        return [("authorization", f"Bearer {token}")] if token else []


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    srv = FlywheelServer(tmp_path_factory.mktemp("tenancy") / "data").start()
    try:
        srv.cli("cache", "create", "a", "--private")
        srv.cli("cache", "create", "b", "--private")
        srv.cli("cache", "create", "pub")
        admin = {"Authorization": f"Bearer {srv.admin_token}"}
        nar = nar_of(os.urandom(3000))
        path = random_hash_part()
        nar_name, narinfo = narinfo_for(path, nar, nar)
        assert HTTP.put(f"{srv.url}/a/nar/{nar_name}", content=nar,
                        headers=admin).status_code == 200
        assert HTTP.put(f"{srv.url}/a/{path}.narinfo", content=narinfo,
                        headers=admin).status_code == 200
        blob = os.urandom(2000)
        assert HTTP.put(f"{srv.url}/a/cas/{_sha(blob)}", content=blob,
                        headers=admin).status_code == 200
        directory = re_pb2.Directory()
        directory.files.add(name="f", digest=_digest(blob))
        dir_bytes = directory.SerializeToString()
        assert HTTP.put(f"{srv.url}/a/cas/{_sha(dir_bytes)}", content=dir_bytes,
                        headers=admin).status_code == 200
        result = re_pb2.ActionResult()
        result.output_files.add(path="out", digest=_digest(blob))
        action = _sha(os.urandom(8))
        assert HTTP.put(f"{srv.url}/a/ac/{action}", content=result.SerializeToString(),
                        headers=admin).status_code == 200
        tokens: dict[str, str | None] = {"anonymous": None,
                                         "reader_a": srv.mint("reader", "--pull", "a"),
                                         "pusher_b": srv.mint("pusher", "--push", "b")}
        with grpc.insecure_channel(srv.grpc_target) as channel:
            yield World(srv, tokens, path, nar_name, nar, narinfo, blob, dir_bytes, action,
                        channel)
    finally:
        srv.stop()


# Outcomes: "found" (the cache's content was served / reported present), "missing" (a clean
# miss, or "upload it first"), "ok" (allowed, no content involved), "unauthenticated",
# "denied".


def _http(r: httpx.Response, found: Callable[[httpx.Response], bool] | None = None) -> str:
    if r.status_code == 401:
        return "unauthenticated"
    if r.status_code == 403:
        return "denied"
    if r.status_code == 404 or (r.status_code == 400 and "first" in r.text):
        return "missing"
    assert r.status_code < 300, (r.status_code, r.text)
    if found is None:
        return "ok"
    return "found" if found(r) else "missing"


def _grpc(call: Callable[[], Any]) -> str:
    try:
        call()
    except grpc.RpcError as e:
        code = e.code()
        if code in (S.NOT_FOUND, S.FAILED_PRECONDITION):
            return "missing"
        return {S.UNAUTHENTICATED: "unauthenticated",
                S.PERMISSION_DENIED: "denied"}.get(code, f"unexpected {code}: {e.details()}")
    return "found"


def _fresh_nar(w: World, cache: str, caller: str) -> httpx.Response:
    nar = nar_of(os.urandom(500))
    name, _ = narinfo_for(random_hash_part(), nar, nar)
    return HTTP.put(f"{w.srv.url}/{cache}/nar/{name}", content=nar, headers=w.headers(caller))


def _claim_their_nar(w: World, cache: str, caller: str) -> httpx.Response:
    """A narinfo naming ``a``'s NAR by its hash, with the right NarHash and NarSize."""
    h = random_hash_part()
    text = w.narinfo.replace(w.path.encode(), h.encode())
    return HTTP.put(f"{w.srv.url}/{cache}/{h}.narinfo", content=text, headers=w.headers(caller))


def _upload_path(w: World, cache: str, caller: str, nar: bytes) -> httpx.Response:
    h = random_hash_part()
    info = {"cache": cache, "store_path_hash": h, "store_path": f"/nix/store/{h}-thing",
            "references": [], "nar_hash": nix_hash(nar), "nar_size": len(nar)}
    return HTTP.put(f"{w.srv.url}/_api/v1/upload-path", content=nar,
                    headers={**w.headers(caller), "X-Attic-Nar-Info": json.dumps(info)})


def _ac_naming_their_blob(w: World, cache: str, caller: str) -> httpx.Response:
    result = re_pb2.ActionResult()
    result.output_files.add(path="stolen", digest=_digest(w.blob))
    return HTTP.put(f"{w.srv.url}/{cache}/ac/{_sha(os.urandom(8))}",
                    content=result.SerializeToString(), headers=w.headers(caller))


def _listed(w: World) -> Callable[[httpx.Response], bool]:
    return lambda r: any(o["store_path_hash"] == w.path for o in r.json()["objects"])


# (method, route template) → (action it needs, probe(world, cache, caller) → outcome)
Probe = Callable[[World, str, str], str]
HTTP_PROBES: dict[tuple[str, str], tuple[str, Probe]] = {
    ("GET", "/{cache}/nix-cache-info"): ("r", lambda w, c, who: _http(HTTP.get(
        f"{w.srv.url}/{c}/nix-cache-info", headers=w.headers(who)))),
    ("HEAD", "/{cache}/nix-cache-info"): ("r", lambda w, c, who: _http(HTTP.head(
        f"{w.srv.url}/{c}/nix-cache-info", headers=w.headers(who)))),
    ("PUT", "/{cache}/nix-cache-info"): ("w", lambda w, c, who: _http(HTTP.put(
        f"{w.srv.url}/{c}/nix-cache-info", content=b"StoreDir: /nix/store\n",
        headers=w.headers(who)))),
    ("GET", "/{cache}/{hash}.narinfo"): ("r", lambda w, c, who: _http(HTTP.get(
        f"{w.srv.url}/{c}/{w.path}.narinfo", headers=w.headers(who)), lambda r: True)),
    ("HEAD", "/{cache}/{hash}.narinfo"): ("r", lambda w, c, who: _http(HTTP.head(
        f"{w.srv.url}/{c}/{w.path}.narinfo", headers=w.headers(who)), lambda r: True)),
    ("PUT", "/{cache}/{hash}.narinfo"): ("w", lambda w, c, who: _http(
        _claim_their_nar(w, c, who))),
    ("DELETE", "/{cache}/{hash}.narinfo"): ("d", lambda w, c, who: _http(HTTP.delete(
        f"{w.srv.url}/{c}/{w.path}.narinfo", headers=w.headers(who)))),
    ("GET", "/{cache}/nar/{file}"): ("r", lambda w, c, who: _http(HTTP.get(
        f"{w.srv.url}/{c}/nar/{w.nar_name}", headers=w.headers(who)),
        lambda r: r.content == w.nar)),
    ("HEAD", "/{cache}/nar/{file}"): ("r", lambda w, c, who: _http(HTTP.head(
        f"{w.srv.url}/{c}/nar/{w.nar_name}", headers=w.headers(who)), lambda r: True)),
    ("PUT", "/{cache}/nar/{file}"): ("w", lambda w, c, who: _http(_fresh_nar(w, c, who))),
    ("GET", "/{cache}/cas/{hash}"): ("r", lambda w, c, who: _http(HTTP.get(
        f"{w.srv.url}/{c}/cas/{_sha(w.blob)}", headers=w.headers(who)),
        lambda r: r.content == w.blob)),
    ("HEAD", "/{cache}/cas/{hash}"): ("r", lambda w, c, who: _http(HTTP.head(
        f"{w.srv.url}/{c}/cas/{_sha(w.blob)}", headers=w.headers(who)), lambda r: True)),
    ("PUT", "/{cache}/cas/{hash}"): ("w", lambda w, c, who: _http(HTTP.put(
        f"{w.srv.url}/{c}/cas/{_sha(data := os.urandom(100))}", content=data,
        headers=w.headers(who)))),
    ("GET", "/{cache}/ac/{hash}"): ("r", lambda w, c, who: _http(HTTP.get(
        f"{w.srv.url}/{c}/ac/{w.action}", headers=w.headers(who)), lambda r: True)),
    ("HEAD", "/{cache}/ac/{hash}"): ("r", lambda w, c, who: _http(HTTP.head(
        f"{w.srv.url}/{c}/ac/{w.action}", headers=w.headers(who)), lambda r: True)),
    ("PUT", "/{cache}/ac/{hash}"): ("w", lambda w, c, who: _http(
        _ac_naming_their_blob(w, c, who))),
    ("POST", "/_api/v1/get-missing-paths"): ("r", lambda w, c, who: _http(HTTP.post(
        f"{w.srv.url}/_api/v1/get-missing-paths", headers=w.headers(who),
        json={"cache": c, "store_path_hashes": [w.path]}),
        lambda r: r.json()["missing_paths"] == [])),
    ("PUT", "/_api/v1/upload-path"): ("w", lambda w, c, who: _http(
        _upload_path(w, c, who, nar_of(os.urandom(400))))),
    ("GET", "/_api/v1/cache-config/{cache}"): ("r", lambda w, c, who: _http(HTTP.get(
        f"{w.srv.url}/_api/v1/cache-config/{c}", headers=w.headers(who)))),
    ("POST", "/_api/v1/cache-config/{cache}"): ("cc", lambda w, c, who: _http(HTTP.post(
        f"{w.srv.url}/_api/v1/cache-config/{c}", headers=w.headers(who), json={}))),
    ("PATCH", "/_api/v1/cache-config/{cache}"): ("cr", lambda w, c, who: _http(HTTP.patch(
        f"{w.srv.url}/_api/v1/cache-config/{c}", headers=w.headers(who),
        json={"priority": 7}))),
    ("DELETE", "/_api/v1/cache-config/{cache}"): ("cd", lambda w, c, who: _http(HTTP.delete(
        f"{w.srv.url}/_api/v1/cache-config/{c}", headers=w.headers(who)))),
    ("GET", "/{cache}/attic-cache-info"): ("r", lambda w, c, who: _http(HTTP.get(
        f"{w.srv.url}/{c}/attic-cache-info", headers=w.headers(who)))),
    ("GET", "/_api/v1/caches/{cache}/objects"): ("r", lambda w, c, who: _http(HTTP.get(
        f"{w.srv.url}/_api/v1/caches/{c}/objects", headers=w.headers(who)), _listed(w))),
    ("DELETE", "/_api/v1/caches/{cache}/objects/{hash}"): ("d", lambda w, c, who: _http(
        HTTP.delete(f"{w.srv.url}/_api/v1/caches/{c}/objects/{w.path}",
                    headers=w.headers(who)))),
    ("GET", "/_api/v1/caches/{cache}/pins"): ("r", lambda w, c, who: _http(HTTP.get(
        f"{w.srv.url}/_api/v1/caches/{c}/pins", headers=w.headers(who)))),
    ("PUT", "/_api/v1/caches/{cache}/pins/{name}"): ("w", lambda w, c, who: _http(HTTP.put(
        f"{w.srv.url}/_api/v1/caches/{c}/pins/theirs", headers=w.headers(who),
        json={"store_path": f"/nix/store/{w.path}-thing"}), lambda r: True)),
    ("DELETE", "/_api/v1/caches/{cache}/pins/{name}"): ("d", lambda w, c, who: _http(
        HTTP.delete(f"{w.srv.url}/_api/v1/caches/{c}/pins/theirs", headers=w.headers(who)))),
}
# Cache routes not about one cache named in the request; probed by the tests below.
UNSCOPED = {("GET", "/_api/v1/caches"), ("GET", "/status"), ("GET", "/metrics")}


def _stubs(w: World) -> tuple[Any, Any, Any, Any]:
    return (re_grpc.CapabilitiesStub(w.channel), re_grpc.ActionCacheStub(w.channel),
            re_grpc.ContentAddressableStorageStub(w.channel), bs_grpc.ByteStreamStub(w.channel))


def _batch_read(w: World, c: str, who: str) -> Any:
    reply = _stubs(w)[2].BatchReadBlobs(re_pb2.BatchReadBlobsRequest(
        instance_name=c, digests=[_digest(w.blob)]), metadata=w.metadata(who), timeout=30)
    if reply.responses[0].status.code != 0:
        raise _Missing
    assert reply.responses[0].data == w.blob


def _find_missing(w: World, c: str, who: str) -> None:
    reply = _stubs(w)[2].FindMissingBlobs(re_pb2.FindMissingBlobsRequest(
        instance_name=c, blob_digests=[_digest(w.blob)]), metadata=w.metadata(who), timeout=30)
    if reply.missing_blob_digests:
        raise _Missing


def _query_write(w: World, c: str, who: str) -> None:
    d = _digest(w.blob)
    reply = _stubs(w)[3].QueryWriteStatus(bs_pb2.QueryWriteStatusRequest(
        resource_name=f"{c}/uploads/q-{os.urandom(4).hex()}/blobs/{d.hash}/{d.size_bytes}"),
        metadata=w.metadata(who), timeout=30)
    assert reply.complete, reply


def _write_their_blob_without_bytes(w: World, c: str, who: str) -> None:
    """Naming a blob another cache holds is not a write of it: the stream must not end
    early as if it were stored."""
    d = _digest(w.blob)
    name = f"{c}/uploads/w-{os.urandom(4).hex()}/blobs/{d.hash}/{d.size_bytes}"
    try:
        reply = _stubs(w)[3].Write(iter([bs_pb2.WriteRequest(resource_name=name)]),
                                   metadata=w.metadata(who), timeout=30)
    except grpc.RpcError as e:
        if e.code() == S.INVALID_ARGUMENT and "without finish_write" in (e.details() or ""):
            raise _Missing from None  # the server waits for the bytes
        raise
    assert reply.committed_size == d.size_bytes


class _Missing(Exception):
    pass


def _grpc_outcome(call: Callable[[], Any]) -> str:
    try:
        return _grpc(call)
    except _Missing:
        return "missing"


GRPC_PROBES: dict[str, tuple[str, Probe]] = {
    "GetCapabilities": ("r", lambda w, c, who: _grpc_outcome(lambda: _stubs(w)[0].GetCapabilities(
        re_pb2.GetCapabilitiesRequest(instance_name=c), metadata=w.metadata(who), timeout=30))),
    "GetActionResult": ("r", lambda w, c, who: _grpc_outcome(lambda: _stubs(w)[1].GetActionResult(
        re_pb2.GetActionResultRequest(instance_name=c, action_digest=re_pb2.Digest(
            hash=w.action, size_bytes=1)), metadata=w.metadata(who), timeout=30))),
    "UpdateActionResult": ("w", lambda w, c, who: _grpc_outcome(
        lambda: _stubs(w)[1].UpdateActionResult(re_pb2.UpdateActionResultRequest(
            instance_name=c, action_digest=_digest(os.urandom(8)),
            action_result=re_pb2.ActionResult(output_files=[re_pb2.OutputFile(
                path="stolen", digest=_digest(w.blob))])), metadata=w.metadata(who),
            timeout=30))),
    "FindMissingBlobs": ("r", lambda w, c, who: _grpc_outcome(
        lambda: _find_missing(w, c, who))),
    "BatchUpdateBlobs": ("w", lambda w, c, who: _grpc_outcome(
        lambda: _stubs(w)[2].BatchUpdateBlobs(re_pb2.BatchUpdateBlobsRequest(
            instance_name=c, requests=[re_pb2.BatchUpdateBlobsRequest.Request(
                digest=_digest(data := os.urandom(50)), data=data)]),
            metadata=w.metadata(who), timeout=30))),
    "BatchReadBlobs": ("r", lambda w, c, who: _grpc_outcome(lambda: _batch_read(w, c, who))),
    "GetTree": ("r", lambda w, c, who: _grpc_outcome(lambda: list(_stubs(w)[2].GetTree(
        re_pb2.GetTreeRequest(instance_name=c, root_digest=_digest(w.directory)),
        metadata=w.metadata(who), timeout=30)))),
    "Read": ("r", lambda w, c, who: _grpc_outcome(lambda: list(_stubs(w)[3].Read(
        bs_pb2.ReadRequest(resource_name=f"{c}/blobs/{_sha(w.blob)}/{len(w.blob)}"),
        metadata=w.metadata(who), timeout=30)))),
    "Write": ("w", lambda w, c, who: _grpc_outcome(
        lambda: _write_their_blob_without_bytes(w, c, who))),
    "QueryWriteStatus": ("w", lambda w, c, who: _grpc_outcome(
        lambda: _query_write(w, c, who))),
}


def _may(caller: str, cache: str, action: str) -> bool:
    if action == "r" and cache == "pub":
        return True
    if caller == "reader_a":
        return cache == "a" and action == "r"
    if caller == "pusher_b":
        return cache == "b" and action in ("r", "w")
    return False


def _expected(caller: str, cache: str, action: str, content: bool) -> set[str]:
    if not _may(caller, cache, action):
        return {"unauthenticated" if caller == "anonymous" else "denied"}
    if not content:
        return {"ok", "found"}
    # Only ``a`` holds the content: anywhere else it is a clean miss, never a hit.
    return {"found"} if cache == "a" else {"missing"}


# Probes whose answer depends on content held by ``a`` (the rest only on the right).
CONTENT = {("GET", "/{cache}/{hash}.narinfo"), ("HEAD", "/{cache}/{hash}.narinfo"),
           ("PUT", "/{cache}/{hash}.narinfo"), ("GET", "/{cache}/nar/{file}"),
           ("HEAD", "/{cache}/nar/{file}"), ("GET", "/{cache}/cas/{hash}"),
           ("HEAD", "/{cache}/cas/{hash}"), ("GET", "/{cache}/ac/{hash}"),
           ("HEAD", "/{cache}/ac/{hash}"), ("PUT", "/{cache}/ac/{hash}"),
           ("POST", "/_api/v1/get-missing-paths"), ("GET", "/_api/v1/caches/{cache}/objects"),
           ("PUT", "/_api/v1/caches/{cache}/pins/{name}")}
GRPC_CONTENT = {"GetActionResult", "UpdateActionResult", "FindMissingBlobs",
                "BatchReadBlobs", "GetTree", "Read", "Write", "QueryWriteStatus"}


def test_every_cache_route_and_method_has_a_probe() -> None:
    routes = {(m, ep.path) for ep in ENDPOINTS for m in ep.methods if ep.resource == "cache"}
    assert routes == set(HTTP_PROBES) | (UNSCOPED & routes)
    methods = {name for cls in (grpc_services.Capabilities, grpc_services.ActionCache,
                                grpc_services.ContentAddressableStorage,
                                grpc_services.ByteStream)
               for name, fn in vars(cls).items() if hasattr(fn, "declared")}
    assert methods == set(GRPC_PROBES)
    for ep in ENDPOINTS:
        if (ep.methods[0], ep.path) in HTTP_PROBES:
            assert ep.action == HTTP_PROBES[ep.methods[0], ep.path][0] or \
                HTTP_PROBES[ep.methods[0], ep.path][0] in ep.or_actions, ep


@pytest.mark.parametrize("route", sorted(HTTP_PROBES), ids=lambda r: f"{r[0]} {r[1]}")
def test_http_route_across_caches_and_callers(world: World, route: tuple[str, str]) -> None:
    action, probe = HTTP_PROBES[route]
    got = {(caller, cache): probe(world, cache, caller) for caller in CALLERS for cache in CACHES}
    wrong = {k: v for k, v in got.items()
             if v not in _expected(*k, action, route in CONTENT)}
    assert not wrong, wrong


@pytest.mark.parametrize("method", sorted(GRPC_PROBES))
def test_grpc_method_across_caches_and_callers(world: World, method: str) -> None:
    action, probe = GRPC_PROBES[method]
    got = {(caller, cache): probe(world, cache, caller) for caller in CALLERS for cache in CACHES}
    wrong = {k: v for k, v in got.items()
             if v not in _expected(*k, action, method in GRPC_CONTENT)}
    assert not wrong, wrong


def test_listings_status_and_metrics_name_only_readable_caches(world: World) -> None:
    base = world.srv.url
    # Some traffic on every cache, so /metrics has samples for each.
    for cache in CACHES:
        HTTP.get(f"{base}/{cache}/{world.path}.narinfo", headers={
            "Authorization": f"Bearer {world.srv.admin_token}"})
    # Workers write counts in batches: wait until the admin's view names every cache.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(
            f'cache="{c}"' in HTTP.get(f"{base}/metrics", headers={
                "Authorization": f"Bearer {world.srv.admin_token}"}).text
            for c in CACHES):
        time.sleep(0.1)
    for caller, visible in (("anonymous", {"pub"}), ("reader_a", {"a", "pub"}),
                            ("pusher_b", {"b", "pub"})):
        listed = {c["name"] for c in HTTP.get(f"{base}/_api/v1/caches",
                                              headers=world.headers(caller)).json()["caches"]}
        assert listed & set(CACHES) == visible, caller
        status = HTTP.get(f"{base}/status", headers=world.headers(caller)).json()
        assert set(status["caches"]) & set(CACHES) == visible, caller
        metrics = HTTP.get(f"{base}/metrics", headers=world.headers(caller)).text
        named = {c for c in CACHES if f'cache="{c}"' in metrics}
        assert named == visible, (caller, named)


def test_token_routes_need_an_admin(world: World) -> None:
    # The JSON API's token routes (the dashboard's pages have their own checks).
    routes = [(m, ep.path) for ep in ENDPOINTS if ep.resource == "tokens"
              and ep.path.startswith("/_api/") for m in ep.methods]
    assert {path for _, path in routes} == {"/_api/v1/tokens", "/_api/v1/tokens/revoke"}
    for method, path in routes:
        for caller, status in (("anonymous", 401), ("reader_a", 403), ("pusher_b", 403)):
            r = HTTP.request(method, f"{world.srv.url}{path}", headers=world.headers(caller),
                             json={"sub": "x", "caches": {"*": {"r": 1}}}
                             if method == "POST" else None)
            assert r.status_code == status, (method, path, caller, r.text)


def _own_cache(w: World, name: str, *flags: str) -> dict[str, str]:
    """A fresh cache and a token that may push to it."""
    w.srv.cli("cache", "create", name, *flags)
    return {"Authorization": f"Bearer {w.srv.mint(name, '--push', name)}"}


def test_a_public_cache_never_serves_private_content_anonymously(world: World) -> None:
    """The attack of the hostile review: knowing a NarHash (with compression=none the file
    hash is the NarHash), a pusher claims another tenant's NAR in a public cache."""
    pusher = _own_cache(world, "attacked")
    h = random_hash_part()
    claim = world.narinfo.replace(world.path.encode(), h.encode())
    answers = set()
    for size in (b"1", str(len(world.nar)).encode()):
        forged = claim.replace(f"NarSize: {len(world.nar)}".encode(), b"NarSize: " + size)
        r = HTTP.put(f"{world.srv.url}/attacked/{h}.narinfo", content=forged, headers=pusher)
        assert r.status_code == 400
        answers.add(r.text)
    # The same answer whatever was claimed: nothing about the stored NAR's size, hash or
    # existence.
    (answer,) = answers
    assert "upload the NAR first" in answer and str(len(world.nar)) not in answer
    assert HTTP.get(f"{world.srv.url}/attacked/{h}.narinfo").status_code == 404
    assert HTTP.get(f"{world.srv.url}/attacked/nar/{world.nar_name}").status_code == 404
    assert HTTP.get(f"{world.srv.url}/pub/cas/{_sha(world.blob)}").status_code == 404


def test_sending_the_bytes_is_proof_but_reveals_no_other_holder(world: World) -> None:
    pusher = _own_cache(world, "sender", "--private")
    r = _upload_path(world, "sender", "anonymous", world.nar)
    assert r.status_code == 401
    r = HTTP.put(f"{world.srv.url}/_api/v1/upload-path", content=world.nar, headers={
        **pusher, "X-Attic-Nar-Info": json.dumps({
            "cache": "sender", "store_path_hash": world.path,
            "store_path": f"/nix/store/{world.path}-thing", "references": [],
            "nar_hash": nix_hash(world.nar), "nar_size": len(world.nar)})})
    assert r.status_code == 200
    # Stored once already (in a), but the sender may not read a: no "Deduplicated".
    assert r.json()["kind"] == "Uploaded", r.text
    # Having sent the bytes, the sender's cache holds the path and serves it.
    got = HTTP.get(f"{world.srv.url}/sender/{world.path}.narinfo", headers=pusher)
    assert got.status_code == 200
    nar_url = next(line.split(": ", 1)[1] for line in got.text.splitlines()
                   if line.startswith("URL: "))
    assert HTTP.get(f"{world.srv.url}/sender/{nar_url}", headers=pusher).content


"""Two ``flywheel serve`` replicas over one PostgreSQL database and one S3 bucket
(SeaweedFS) behave as one server: what one stores the other serves, a revocation through one
holds on the other, a NAR pushed through both at once is stored once, Bazel writes through
both keep the size bound, content lost from the bucket fails closed and ``fsck --repair``
cleans it up, and garbage collection running beside uploads takes nothing a client was told
is stored. Large NARs are chunked; replica B answers NAR downloads with presigned
redirects."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import obstore
import pytest

from tests.scaleout.conftest import Backends
from tests.support.cacheworld import nar_of, narinfo_for
from tests.support.nixenv import Nix
from tests.support.postgres import PostgresServer
from tests.support.seaweed import SeaweedServer
from tests.support.server import FlywheelServer

HTTP = httpx.Client(timeout=60)
BOUND = 256 << 10


@dataclass
class Cluster:
    backends: Backends
    a: FlywheelServer
    b: FlywheelServer

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.a.admin_token}"}

    def public_key(self, cache: str = "main") -> str:
        return str(HTTP.get(f"{self.a.url}/_api/v1/cache-config/{cache}").json()["public_key"])

    def cli(self, *args: str, check: bool = True) -> str:
        return self.backends.cli(self.a.data_dir, *args, check=check).stdout

    def canonical_nars(self) -> list[tuple[str, str, bool]]:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.backends.database_url.replace(
            "postgresql://", "postgresql+psycopg://"))
        try:
            with engine.connect() as conn:
                return [(r[0], r[1], bool(r[2])) for r in conn.execute(text(
                    "SELECT file_hash, nar_hash, chunked FROM nars WHERE alias_of IS NULL"))]
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def cluster(postgres: PostgresServer, seaweed: SeaweedServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    backends = Backends.make(postgres, seaweed, root,
                             storage={"chunk-nars-from": "32KiB", "chunk-size": "4KiB"},
                             bazel={"max-size": f"{BOUND}"})
    a = backends.replica(root / "a").start()
    # B takes the same backends as flags, the usual AWS variables and FLYWHEEL_* settings,
    # and answers NAR downloads with presigned redirects.
    b = FlywheelServer(root / "b", workers=1, extra_args=[
        "--database-url", backends.database_url, "--storage", f"s3://{backends.bucket}/flywheel",
        "--s3-endpoint", seaweed.endpoint], env={
        **seaweed.env(), "FLYWHEEL_STORAGE_REDIRECT_TTL": "300",
        "FLYWHEEL_STORAGE_CHUNK_NARS_FROM": "32KiB", "FLYWHEEL_STORAGE_CHUNK_SIZE": "4KiB",
        "FLYWHEEL_BAZEL_MAX_SIZE": str(BOUND)}).start()
    try:
        yield Cluster(backends, a, b)
    finally:
        b.stop()
        a.stop()


def _hash(path: str) -> str:
    return Path(path).name[:32]


def test_nix_pushes_through_one_replica_and_substitutes_through_the_other(
        cluster: Cluster, nix: Nix, other_nix: Nix, tmp_path: Path) -> None:
    top = nix.build_closure(tmp_path, files=6, size=12_000)
    closure = nix.closure(top)
    nix.copy_to(f"{cluster.a.url}/main?compression=zstd", top,
                netrc=nix.netrc(cluster.a.admin_token))
    for path in closure:
        assert HTTP.get(f"{cluster.b.url}/main/{_hash(path)}.narinfo").status_code == 200
    leaf = next(p for p in closure if p.endswith("-leaf"))
    served = HTTP.get(f"{cluster.b.url}/main/{_hash(leaf)}.narinfo").text
    # The leaf's NAR is past the chunking size: stored as chunks, served uncompressed.
    assert "Compression: none" in served
    assert cluster.backends.keys("chunk/")
    small = next(p for p in closure if p.endswith("-top"))
    nar_url = next(line.split(": ")[1] for line in HTTP.get(
        f"{cluster.b.url}/main/{_hash(small)}.narinfo").text.splitlines()
        if line.startswith("URL: "))
    redirect = HTTP.get(f"{cluster.b.url}/main/{nar_url}")
    assert redirect.status_code == 302 and "X-Amz-Signature" in redirect.headers["location"]
    assert HTTP.get(f"{cluster.a.url}/main/{nar_url}").status_code == 200  # A streams it

    root = tmp_path / "fresh-store"
    other_nix.copy_from(f"{cluster.b.url}/main", root, top, keys=cluster.public_key())
    for path in closure:
        assert (root / path.lstrip("/")).exists()
    assert (root / leaf.lstrip("/") / "share/doc/file-5.txt").read_text() == \
        (Path(leaf) / "share/doc/file-5.txt").read_text()


def test_a_token_revoked_through_one_replica_is_refused_by_the_other(cluster: Cluster) -> None:
    token = cluster.cli("token", "mint", "--sub", "ci-revoked", "--pull", "main").strip()
    headers = {"Authorization": f"Bearer {token}"}
    assert HTTP.get(f"{cluster.b.url}/main/nix-cache-info", headers=headers).status_code == 200
    r = HTTP.post(f"{cluster.a.url}/_api/v1/tokens/revoke", headers=cluster.admin,
                  json={"sub": "ci-revoked"})
    assert r.status_code == 200, r.text
    assert HTTP.get(f"{cluster.b.url}/main/nix-cache-info", headers=headers).status_code == 401


def test_one_nar_pushed_through_both_replicas_at_once_is_stored_once(cluster: Cluster) -> None:
    nar = nar_of(os.urandom(20_000))  # below the chunking size: one object
    hash_parts = [f"{'0' * 30}{i:02d}" for i in range(8)]

    def push(i: int) -> tuple[int, int]:
        replica = (cluster.a, cluster.b)[i % 2]
        name, text = narinfo_for(hash_parts[i], nar, nar)
        put = HTTP.put(f"{replica.url}/main/nar/{name}", content=nar, headers=cluster.admin)
        info = HTTP.put(f"{replica.url}/main/{hash_parts[i]}.narinfo", content=text,
                        headers=cluster.admin)
        return put.status_code, info.status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(push, range(8))) == {(200, 200)}
    nar_hash = "sha256:" + _b32(hashlib.sha256(nar).digest())
    stored = [row for row in cluster.canonical_nars() if row[1] == nar_hash]
    assert len(stored) == 1
    assert [k for k in cluster.backends.keys("nar/") if k.endswith(stored[0][0])] == \
        [f"nar/{stored[0][0]}"]
    for replica in (cluster.a, cluster.b):
        for h in hash_parts:
            assert HTTP.get(f"{replica.url}/main/{h}.narinfo").status_code == 200


def test_bazel_writes_through_both_replicas_keep_the_size_bound(cluster: Cluster) -> None:
    def upload(i: int) -> int:
        data = os.urandom(9000) + i.to_bytes(4, "big")
        replica = (cluster.a, cluster.b)[i % 2]
        return HTTP.put(f"{replica.url}/main/cas/{hashlib.sha256(data).hexdigest()}",
                        content=data, headers=cluster.admin).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(upload, range(60))) == {200}
    used = HTTP.get(f"{cluster.b.url}/status", headers=cluster.admin).json()["bazel_size"]
    assert used["used_bytes"] <= BOUND
    assert sum(1 for _ in cluster.backends.keys("cas/")) * 9004 <= BOUND
    assert "Bazel usage total" not in cluster.cli("fsck", "--grace", "1h", check=False)


def test_content_lost_from_the_bucket_fails_closed_and_fsck_repairs_it(
        cluster: Cluster, nix: Nix, other_nix: Nix, tmp_path: Path) -> None:
    top = nix.build_closure(tmp_path, files=1, size=500)
    nix.copy_to(f"{cluster.a.url}/main", top, netrc=nix.netrc(cluster.a.admin_token))
    nar_url = next(line.split(": ")[1] for line in HTTP.get(
        f"{cluster.a.url}/main/{_hash(top)}.narinfo").text.splitlines()
        if line.startswith("URL: "))
    file_hash = nar_url.removeprefix("nar/").split(".")[0]
    obstore.delete(cluster.backends.store, f"nar/{file_hash}")  # behind the servers' back

    for replica in (cluster.a, cluster.b):
        assert HTTP.get(f"{replica.url}/main/{nar_url}").status_code == 503
        assert HTTP.head(f"{replica.url}/main/{nar_url}").status_code == 404
    # Nix falls back to its next substituter: a file:// copy of the same closure.
    fallback = tmp_path / "fallback-cache"
    key = tmp_path / "fallback.sec"
    nix.run("nix-store", "--generate-binary-cache-key", "fallback-1", str(key),
            str(tmp_path / "fallback.pub"))
    nix.copy_to(f"file://{fallback}?secret-key={key}", top)
    keys = f"{cluster.public_key()} {(tmp_path / 'fallback.pub').read_text().strip()}"
    done = other_nix.realise(tmp_path / "s", top, f"{cluster.b.url}/main file://{fallback}",
                             keys=keys)
    assert top in done.stdout

    found = cluster.cli("fsck", "--grace", "1h", check=False)
    assert "NARs with missing or short content found: 1" in found, found
    assert "NARs with missing or short content removed: 1" in cluster.cli(
        "fsck", "--grace", "1h", "--repair")
    for replica in (cluster.a, cluster.b):
        assert HTTP.get(f"{replica.url}/main/{_hash(top)}.narinfo").status_code == 404
    # The next push heals it.
    nix.copy_to(f"{cluster.b.url}/main", top, netrc=nix.netrc(cluster.a.admin_token))
    assert HTTP.get(f"{cluster.a.url}/main/{_hash(top)}.narinfo").status_code == 200


def test_a_lost_chunk_fails_closed_before_the_first_byte(cluster: Cluster) -> None:
    contents = os.urandom(80_000)
    nar = nar_of(contents)
    h = "1" * 32
    name, text = narinfo_for(h, nar, nar)
    assert HTTP.put(f"{cluster.a.url}/main/nar/{name}", content=nar,
                    headers=cluster.admin).status_code == 200
    assert HTTP.put(f"{cluster.a.url}/main/{h}.narinfo", content=text,
                    headers=cluster.admin).status_code == 200
    assert HTTP.get(f"{cluster.a.url}/main/nar/{name}").content == nar
    chunk = next(k for k in cluster.backends.keys("chunk/")
                 if _chunk_of(cluster, k, contents))
    obstore.delete(cluster.backends.store, chunk)
    assert HTTP.get(f"{cluster.b.url}/main/nar/{name}").status_code == 503
    assert "chunks with missing or corrupt content removed: 1" in cluster.cli(
        "fsck", "--grace", "1h", "--repair")
    assert HTTP.get(f"{cluster.b.url}/main/{h}.narinfo").status_code == 404


def _chunk_of(cluster: Cluster, key: str, contents: bytes) -> bool:
    from flywheel.codecs import StreamDecoder

    out: list[bytes] = []
    decoder = StreamDecoder("zstd", out.append)
    decoder.feed(bytes(obstore.get(cluster.backends.store, key).bytes()))
    decoder.finish()
    piece = b"".join(out)
    return len(piece) > 64 and piece in contents


def test_gc_beside_uploads_keeps_everything_a_client_was_told_is_stored(
        cluster: Cluster) -> None:
    grace = 3
    nars = [nar_of(os.urandom(3000)) for _ in range(12)]
    # First uploaded without narinfos, then left past the grace: unreferenced content that
    # the uploads below deduplicate against while gc wants to collect it.
    for nar in nars:
        name, _ = narinfo_for("2" * 32, nar, nar)
        assert HTTP.put(f"{cluster.a.url}/main/nar/{name}", content=nar,
                        headers=cluster.admin).status_code == 200
    threading.Event().wait(grace + 1.5)
    stop = threading.Event()
    runs: list[str] = []

    def collect() -> None:
        while not stop.is_set():
            runs.append(cluster.cli("gc", "--grace", str(grace)))

    collector = threading.Thread(target=collect)
    collector.start()
    told: list[tuple[str, str, bytes]] = []
    try:
        for i, nar in enumerate(nars):
            replica = (cluster.a, cluster.b)[i % 2]
            h = f"3{i:031d}"
            name, text = narinfo_for(h, nar, nar)
            put = HTTP.put(f"{replica.url}/main/nar/{name}", content=nar,
                           headers=cluster.admin)
            info = HTTP.put(f"{replica.url}/main/{h}.narinfo", content=text,
                            headers=cluster.admin)
            if put.status_code == info.status_code == 200:
                told.append((h, name, nar))
    finally:
        stop.set()
        collector.join()
    assert len(told) == len(nars)
    assert runs and all("NARs no path names" in r for r in runs)
    runs.append(cluster.cli("gc", "--grace", "0"))
    for h, name, nar in told:
        for replica in (cluster.a, cluster.b):
            assert HTTP.get(f"{replica.url}/main/{h}.narinfo").status_code == 200
        assert HTTP.get(f"{cluster.a.url}/main/nar/{name}").content == nar


def _b32(digest: bytes) -> str:
    from flywheel.nix.base32 import encode

    return encode(digest)


def _narinfo_fetches(upstream: FlywheelServer) -> float:
    total = 0.0
    for line in HTTP.get(f"{upstream.url}/metrics").text.splitlines():
        if line.startswith("flywheel_http_requests_total{") and 'route="narinfo"' in line \
                and 'method="GET"' in line and 'status="200"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_pull_through_fetches_once_verifies_the_key_and_survives_the_upstream_going_away(
        cluster: Cluster, nix: Nix, other_nix: Nix, tmp_path: Path) -> None:
    upstream = FlywheelServer(tmp_path / "upstream", workers=1).start()
    try:
        top = nix.build_closure(tmp_path, files=2, size=3000)
        closure = nix.closure(top)
        nix.copy_to(f"{upstream.url}/main", top, netrc=nix.netrc(upstream.admin_token))
        upstream_key = str(HTTP.get(f"{upstream.url}/_api/v1/cache-config/main")
                           .json()["public_key"])
        for cache, key in (("pt", upstream_key), ("pt-wrong-key", cluster.public_key())):
            assert HTTP.post(f"{cluster.a.url}/_api/v1/cache-config/{cache}",
                             headers=cluster.admin, json={}).status_code == 201
            r = HTTP.patch(f"{cluster.a.url}/_api/v1/cache-config/{cache}",
                           headers=cluster.admin, json={"upstreams": [
                               {"url": f"{upstream.url}/main", "public_key": key}]})
            assert r.status_code == 200, r.text
        assert HTTP.get(f"{cluster.b.url}/_api/v1/cache-config/pt").json()["upstreams"] == \
            [{"url": f"{upstream.url}/main", "public_key": upstream_key}]

        leaf = next(p for p in closure if p.endswith("-leaf"))
        before = _narinfo_fetches(upstream)
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda i: HTTP.get(
                f"{(cluster.a, cluster.b)[i % 2].url}/pt/{_hash(leaf)}.narinfo").status_code,
                range(8)))
        assert statuses == [200] * 8
        assert _narinfo_fetches(upstream) - before == 1  # concurrent misses fetched once
        # Not signed by the key the cache names: a plain miss, nothing stored.
        assert HTTP.get(f"{cluster.a.url}/pt-wrong-key/{_hash(leaf)}.narinfo"
                        ).status_code == 404
        assert HTTP.get(f"{cluster.a.url}/_api/v1/caches/pt-wrong-key/objects",
                        headers=cluster.admin).json()["objects"] == []

        root = tmp_path / "substituted"
        other_nix.copy_from(f"{cluster.b.url}/pt", root, leaf, keys=cluster.public_key("pt"))
        assert (root / leaf.lstrip("/") / "bin/hello").exists()
    finally:
        upstream.stop()
    # The upstream is gone half-way: what was pulled is still served, the rest is a miss.
    assert HTTP.get(f"{cluster.b.url}/pt/{_hash(leaf)}.narinfo").status_code == 200
    assert HTTP.get(f"{cluster.a.url}/pt/{_hash(top)}.narinfo").status_code == 404
    missing = other_nix.copy_from(f"{cluster.a.url}/pt", tmp_path / "s2", top,
                                  keys=cluster.public_key("pt"), check=False)
    assert missing.returncode != 0 and "HTTP error 5" not in missing.stderr

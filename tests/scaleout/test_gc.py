"""Garbage collection and pins, on the embedded backends (SQLite and files) and on the
scale-out ones (PostgreSQL and a bucket): retention by last access, pinned closures kept,
unused content and orphans collected, content already missing tolerated, and the gc role
running on its own schedule."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.scaleout.conftest import Backends
from tests.support.cacheworld import nar_of, narinfo_for
from tests.support.postgres import PostgresServer
from tests.support.seaweed import SeaweedServer
from tests.support.server import FLYWHEEL, FlywheelServer, clean_env, run_cli

HTTP = httpx.Client(timeout=60)


@dataclass
class Setup:
    srv: FlywheelServer
    cli: Callable[..., subprocess.CompletedProcess[str]]
    args: list[str]                      # what `flywheel serve` needs besides the data dir
    keys: Callable[[str], list[str]]     # stored keys under a prefix
    remove: Callable[[str], None]        # delete a stored object behind the server's back

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.srv.admin_token}"}

    def push(self, cache: str, hash_part: str, contents: bytes,
             refs: list[str] | None = None) -> str:
        nar = nar_of(contents)
        name, text = narinfo_for(hash_part, nar, nar)
        if refs:
            text = text.replace(b"References: \n",
                                f"References: {' '.join(refs)}\n".encode())
        assert HTTP.put(f"{self.srv.url}/{cache}/nar/{name}", content=nar,
                        headers=self.admin).status_code == 200
        r = HTTP.put(f"{self.srv.url}/{cache}/{hash_part}.narinfo", content=text,
                     headers=self.admin)
        assert r.status_code == 200, r.text
        return name

    def has(self, cache: str, hash_part: str) -> bool:
        return HTTP.get(f"{self.srv.url}/{cache}/{hash_part}.narinfo",
                        headers=self.admin).status_code == 200


@pytest.fixture(params=["sqlite", "postgres"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    data = tmp_path / "data"
    if request.param == "sqlite":
        srv = FlywheelServer(data, workers=1).start()

        def local_keys(prefix: str) -> list[str]:
            # blobs/<kind>/<fan-out>/<name> holds the key <kind>/<name>
            keys = (f"{p.parent.parent.name}/{p.name}" for p in (data / "blobs").rglob("*")
                    if p.is_file())
            return sorted(k for k in keys if k.startswith(prefix))

        def local_remove(key: str) -> None:
            head, _, name = key.rpartition("/")
            (data / "blobs" / head / name[:2] / name).unlink()

        yield Setup(srv, lambda *a, **kw: run_cli(data, *a, **kw), [], local_keys,
                    local_remove)
        srv.stop()
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    seaweed: SeaweedServer = request.getfixturevalue("seaweed")
    backends = Backends.make(postgres, seaweed, tmp_path / "backends")
    srv = backends.replica(data).start()
    import obstore

    yield Setup(srv, lambda *a, **kw: backends.cli(data, *a, **kw),
                ["--config", str(backends.config)], backends.keys,
                lambda key: obstore.delete(backends.store, key))
    srv.stop()


H = ["a" * 32, "b" * 32, "c" * 32, "d" * 32]


def test_retention_collects_what_was_not_asked_for_and_keeps_pinned_closures(
        setup: Setup) -> None:
    setup.cli("cache", "create", "ret")
    leaf = setup.push("ret", H[0], b"leaf")
    setup.push("ret", H[1], b"top", refs=[f"{H[0]}-thing"])
    setup.push("ret", H[2], b"unpinned")
    r = HTTP.patch(f"{setup.srv.url}/_api/v1/cache-config/ret", headers=setup.admin,
                   json={"retention_period": 2})
    assert r.status_code == 200, r.text
    assert HTTP.get(f"{setup.srv.url}/_api/v1/cache-config/ret",
                    headers=setup.admin).json()["retention_period"] == 2
    pinned = setup.cli("pin", "ret", f"/nix/store/{H[1]}-thing", "--name", "release").stdout
    assert "as 'release'" in pinned
    r = HTTP.put(f"{setup.srv.url}/_api/v1/caches/ret/pins/bad%20name", headers=setup.admin,
                 json={"store_path": f"/nix/store/{H[2]}-thing"})
    assert r.status_code == 400
    r = HTTP.put(f"{setup.srv.url}/_api/v1/caches/ret/pins/nowhere", headers=setup.admin,
                 json={"store_path": f"/nix/store/{H[3]}-thing"})
    assert r.status_code == 404
    time.sleep(3)
    report = setup.cli("gc", "--grace", "0").stdout
    assert "store paths past retention: 1" in report, report
    assert setup.has("ret", H[0]) and setup.has("ret", H[1])  # the pin's closure
    assert not setup.has("ret", H[2])
    assert "NARs no path names: 1" in report
    assert f"nar/{leaf.removesuffix('.nar')}" in setup.keys("nar/")
    listed = HTTP.get(f"{setup.srv.url}/_api/v1/caches/ret/pins", headers=setup.admin).json()
    assert [p["name"] for p in listed["pins"]] == ["release"]
    assert HTTP.delete(f"{setup.srv.url}/_api/v1/caches/ret/pins/release",
                       headers=setup.admin).status_code == 204
    assert setup.cli("pins", "ret").stdout.strip() == ""
    assert setup.cli("unpin", "ret", "release", check=False).returncode == 1
    time.sleep(1)
    assert "store paths past retention: 2" in setup.cli("gc", "--grace", "0").stdout
    assert setup.keys("nar/") == []


def test_gc_takes_orphans_and_tolerates_content_already_missing(setup: Setup) -> None:
    name = setup.push("main", H[0], os.urandom(500))
    key = f"nar/{name.removesuffix('.nar')}"
    assert HTTP.delete(f"{setup.srv.url}/_api/v1/caches/main/objects/{H[0]}",
                       headers=setup.admin).status_code == 204
    setup.remove(key)  # gone from storage before gc gets to it
    blob = os.urandom(300)
    import hashlib

    digest = hashlib.sha256(blob).hexdigest()
    assert HTTP.put(f"{setup.srv.url}/main/cas/{digest}", content=blob,
                    headers=setup.admin).status_code == 200
    setup.cli("cache", "destroy", "main", "--yes")  # nothing holds the blob any more
    report = setup.cli("gc", "--grace", "0").stdout
    assert "NARs no path names: 1" in report and "already missing from storage: 1" in report
    assert "CAS blobs no cache holds: 1" in report
    assert setup.keys("cas/") == [] and setup.keys("nar/") == []
    assert "clean" in setup.cli("fsck", "--grace", "0").stdout


def test_the_gc_role_collects_on_its_schedule(setup: Setup, tmp_path: Path) -> None:
    name = setup.push("main", H[3], os.urandom(700))
    assert HTTP.delete(f"{setup.srv.url}/_api/v1/caches/main/objects/{H[3]}",
                       headers=setup.admin).status_code == 204
    log = (tmp_path / "gc.log").open("wb")
    proc = subprocess.Popen(
        [FLYWHEEL, "serve", "--role", "gc", "--data-dir", str(setup.srv.data_dir),
         *setup.args], stdout=log, stderr=subprocess.STDOUT,
        env=clean_env({"FLYWHEEL_GC_INTERVAL": "1", "FLYWHEEL_GC_GRACE": "0"}))
    try:
        deadline = time.monotonic() + 60
        while f"nar/{name.removesuffix('.nar')}" in setup.keys("nar/"):
            assert time.monotonic() < deadline, (tmp_path / "gc.log").read_text()
            assert proc.poll() is None, (tmp_path / "gc.log").read_text()
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert "garbage collected" in (tmp_path / "gc.log").read_text()

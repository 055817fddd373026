"""Workers keep recent answers in memory; none outlives the change that made it wrong.

Every request here comes on a new connection, so they spread over both workers, and every
change is made by another process than the one asked next: a worker (an upload), or the
``flywheel`` CLI writing to the database directly. Each change is followed at once by many
reads, all of which must see it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.support.cacheworld import nar_of, narinfo_for, random_hash_part
from tests.support.server import FlywheelServer

READS = 24


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlywheelServer]:
    server = FlywheelServer(tmp_path_factory.mktemp("hot") / "data", workers=2).start()
    try:
        yield server
    finally:
        server.stop()


def _reads(url: str, headers: dict[str, str] | None = None) -> set[tuple[int, str]]:
    """What READS requests, each on a connection of its own, were answered."""
    answers = set()
    for _ in range(READS):
        with httpx.Client(timeout=30) as client:
            r = client.get(url, headers={**(headers or {}), "connection": "close"})
            answers.add((r.status_code, r.text if r.status_code == 200 else ""))
    return answers


def test_every_change_is_seen_by_every_worker_at_once(srv: FlywheelServer) -> None:
    srv.cli("cache", "create", "hot")
    admin = {"Authorization": f"Bearer {srv.admin_token}"}
    path = random_hash_part()
    url = f"{srv.url}/hot/{path}.narinfo"
    assert _reads(url) == {(404, "")}   # the absence, now kept by both workers

    nar = nar_of(os.urandom(500))
    nar_name, narinfo = narinfo_for(path, nar, nar)
    assert httpx.put(f"{srv.url}/hot/nar/{nar_name}", content=nar,
                     headers=admin).status_code == 200
    assert httpx.put(url, content=narinfo, headers=admin).status_code == 200
    answers = _reads(url)
    assert len(answers) == 1
    ((status, text),) = answers
    assert status == 200 and f"StorePath: /nix/store/{path}-thing\n" in text
    first_key = srv.public_key("hot").split(":")[0]
    assert f"Sig: {first_key}:" in text

    srv.cli("cache", "configure", "hot", "--regenerate-keypair")
    new_key = srv.public_key("hot").split(":")[0]
    assert new_key != first_key
    answers = _reads(url)
    assert len(answers) == 1 and f"Sig: {new_key}:" in answers.pop()[1]

    srv.cli("cache", "configure", "hot", "--private")
    assert {status for status, _ in _reads(url)} == {401}
    assert {status for status, _ in _reads(url, admin)} == {200}

    srv.cli("cache", "delete-path", "hot", path)
    assert _reads(url, admin) == {(404, "")}
    assert (srv.data_dir / "flywheel.db-changes").stat().st_size == 8   # the generation

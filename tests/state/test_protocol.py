"""The http backend protocol as OpenTofu's client speaks it, replayed against a real server:
lock, read, write with ?ID=, unlock; the refusals (423 with the holder's lock info, 409),
Content-MD5, the empty force-unlock body, the lock URL's POST/DELETE; serial and lineage;
two lockers at once."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading

import pytest

from tests.state.conftest import Caller, lock_info, state_body, token_for
from tests.support.server import FlywheelServer


@pytest.fixture(scope="module")
def writer(server: FlywheelServer) -> Caller:
    return Caller(server.url, token_for(server, "deployer", **{"prod-*": "rwl"}))


@pytest.fixture(scope="module")
def admin(server: FlywheelServer) -> Caller:
    return Caller(server.url, token_for(server, "state-admin", **{"prod-*": "rwla"}))


def md5_of(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def apply_once(caller: Caller, ws: str, body: bytes) -> None:
    """Lock, read, write with the lock ID and its checksum, unlock: one `apply`."""
    info = lock_info()
    assert caller.request("LOCK", f"/_state/{ws}/lock", json=info).status_code == 200
    assert caller.request("GET", f"/_state/{ws}").status_code in (200, 404)
    r = caller.request("POST", f"/_state/{ws}?ID={info['ID']}", content=body,
                       headers={"content-md5": md5_of(body)})
    assert r.status_code == 200, r.text
    assert caller.request("UNLOCK", f"/_state/{ws}/lock", json=info).status_code == 200


def test_an_apply_cycle_stores_a_version_served_back_with_its_checksum(writer: Caller) -> None:
    assert writer.request("GET", "/_state/prod-cycle").status_code == 404
    body = state_body(1, x="one")
    apply_once(writer, "prod-cycle", body)
    r = writer.request("GET", "/_state/prod-cycle")
    assert r.status_code == 200 and r.content == body
    assert r.headers["content-md5"] == md5_of(body)


def test_a_held_lock_refuses_others_with_the_holders_lock_info(writer: Caller) -> None:
    mine, theirs = lock_info(who="alice@laptop"), lock_info(who="bob@ci")
    assert writer.request("LOCK", "/_state/prod-held/lock", json=mine).status_code == 200
    # Locking again with the same ID (a retried request) is not a conflict.
    assert writer.request("LOCK", "/_state/prod-held/lock", json=mine).status_code == 200
    r = writer.request("LOCK", "/_state/prod-held/lock", json=theirs)
    assert r.status_code == 423
    assert r.json() == mine
    # Writes without the lock ID, or with another, are refused and store nothing.
    for query in ("", f"?ID={theirs['ID']}"):
        r = writer.request("POST", f"/_state/prod-held{query}", content=state_body(1))
        assert r.status_code == 423 and r.json()["ID"] == mine["ID"]
    assert writer.request("DELETE", "/_state/prod-held").status_code == 423
    # Unlocking with someone else's lock info is refused too.
    assert writer.request("UNLOCK", "/_state/prod-held/lock", json=theirs).status_code == 423
    assert writer.request("GET", "/_state/prod-held").status_code == 404
    assert writer.request("UNLOCK", "/_state/prod-held/lock", json=mine).status_code == 200
    assert writer.request("LOCK", "/_state/prod-held/lock", json=theirs).status_code == 200


def test_a_write_with_a_lock_id_that_no_longer_holds_is_a_conflict(writer: Caller) -> None:
    info = lock_info()
    writer.request("LOCK", "/_state/prod-gone/lock", json=info)
    assert writer.request("UNLOCK", "/_state/prod-gone/lock").status_code == 200
    r = writer.request("POST", f"/_state/prod-gone?ID={info['ID']}", content=state_body(1))
    assert r.status_code == 409
    assert "force-unlocked" in r.json()["message"]
    assert writer.request("GET", "/_state/prod-gone").status_code == 404


def test_an_empty_unlock_body_force_unlocks_for_a_caller_with_the_lock_permission(
        server: FlywheelServer, writer: Caller) -> None:
    locker = Caller(server.url, token_for(server, "locker", **{"prod-*": "rl"}))
    writer.request("LOCK", "/_state/prod-stuck", json=lock_info())
    r = locker.request("UNLOCK", "/_state/prod-stuck", content=b"")
    assert r.status_code == 200
    assert locker.request("LOCK", "/_state/prod-stuck", json=lock_info()).status_code == 200


def test_the_lock_url_also_takes_post_and_delete(writer: Caller) -> None:
    info = lock_info()
    assert writer.request("POST", "/_state/prod-gitlab-style/lock", json=info).status_code == 200
    r = writer.request("POST", "/_state/prod-gitlab-style/lock", json=lock_info())
    assert r.status_code == 423 and r.json()["ID"] == info["ID"]
    assert writer.request("DELETE", "/_state/prod-gitlab-style/lock",
                          json=info).status_code == 200


def test_content_md5_is_honoured(writer: Caller) -> None:
    body = state_body(1)
    r = writer.request("POST", "/_state/prod-md5", content=body,
                       headers={"content-md5": md5_of(b"something else")})
    assert r.status_code == 400 and "Content-MD5" in r.json()["message"]
    r = writer.request("POST", "/_state/prod-md5", content=body,
                       headers={"content-md5": "not base64!"})
    assert r.status_code == 400
    assert writer.request("GET", "/_state/prod-md5").status_code == 404
    r = writer.request("LOCK", "/_state/prod-md5", content=json.dumps(lock_info()).encode(),
                       headers={"content-md5": md5_of(b"x")})
    assert r.status_code == 400
    assert writer.request("POST", "/_state/prod-md5", content=body,
                          headers={"content-md5": md5_of(body)}).status_code == 200


def test_malformed_requests_are_refused_and_store_nothing(writer: Caller) -> None:
    assert writer.request("LOCK", "/_state/prod-bad/lock", content=b"{").status_code == 400
    assert writer.request("LOCK", "/_state/prod-bad/lock", json={"Who": "x"}).status_code == 400
    assert writer.request("POST", "/_state/prod-bad", content=b"").status_code == 400
    assert writer.request("POST", "/_state/prod-bad?force=maybe",
                          content=state_body(1)).status_code == 400
    assert writer.request("GET", "/_state/-bad-name").status_code == 400
    assert writer.request("GET", "/_state/prod-bad").status_code == 404


def test_a_body_over_the_limit_is_refused_before_it_is_read(
        server: FlywheelServer, writer: Caller) -> None:
    """A terabyte is declared and never sent: the answer comes from the header alone."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(f"POST /_state/prod-big HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {writer.token}\r\n"
                     f"Content-Length: {1 << 40}\r\n\r\n".encode())
        assert b" 413 " in conn.recv(4096).split(b"\r\n", 1)[0] + b" "
    assert writer.request("GET", "/_state/prod-big").status_code == 404


def test_lower_serials_and_other_lineages_are_refused_unless_an_admin_forces(
        writer: Caller, admin: Caller) -> None:
    ws = "/_state/prod-lineage"
    assert writer.request("POST", ws, content=state_body(5)).status_code == 200
    lower = writer.request("POST", ws, content=state_body(4))
    assert lower.status_code == 409 and "serial 4 is lower" in lower.json()["message"]
    other = writer.request("POST", ws, content=state_body(9, lineage="lineage-b"))
    assert other.status_code == 409 and "lineage" in other.json()["message"]
    assert writer.request("GET", ws).content == state_body(5)
    # Forcing needs the admin permission; a writer is refused before anything is read.
    assert writer.request("POST", ws + "?force=true", content=state_body(4)).status_code == 403
    assert admin.request("POST", ws + "?force=true", content=state_body(4)).status_code == 200
    assert writer.request("GET", ws).content == state_body(4)
    # The same serial again, and opaque (client-encrypted) bodies, are taken.
    assert writer.request("POST", ws, content=state_body(4, y="2")).status_code == 200
    assert writer.request("POST", ws, content=b"\x00encrypted").status_code == 200


def test_delete_drops_the_current_state_and_keeps_the_history(
        writer: Caller, admin: Caller) -> None:
    ws = "/_state/prod-purge"
    writer.request("POST", ws, content=state_body(1))
    assert writer.request("DELETE", ws).status_code == 200
    assert writer.request("GET", ws).status_code == 404
    r = admin.request("POST", "/_api/v1/state/prod-purge/rollback", json={"to": 1})
    assert r.status_code == 201
    assert writer.request("GET", ws).content == state_body(1)


def test_two_lockers_at_once_exactly_one_wins(server: FlywheelServer) -> None:
    callers = [Caller(server.url, token_for(server, f"racer-{i}", **{"prod-*": "rwl"}))
               for i in range(8)]
    statuses: list[int] = []
    start = threading.Barrier(len(callers))

    def race(caller: Caller) -> None:
        start.wait()
        statuses.append(caller.request("LOCK", "/_state/prod-race/lock",
                                       json=lock_info()).status_code)

    threads = [threading.Thread(target=race, args=(c,)) for c in callers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] + [423] * (len(callers) - 1)


def test_history_rollback_and_retention(server: FlywheelServer, writer: Caller,
                                        admin: Caller) -> None:
    for serial in range(1, 5):
        apply_once(writer, "prod-hist", state_body(serial, v=str(serial)))
    versions = admin.request("GET", "/_api/v1/state/prod-hist/versions").json()["versions"]
    assert [v["serial"] for v in versions] == [4, 3, 2, 1]
    assert versions[0]["created_by"] == "deployer"
    assert versions[0]["sha256"] == hashlib.sha256(state_body(4, v="4")).hexdigest()
    old = admin.request("GET", "/_api/v1/state/prod-hist/content?version=2")
    assert old.content == state_body(2, v="2")
    # Rollback is for workspace admins; a writer is refused.
    assert writer.request("POST", "/_api/v1/state/prod-hist/rollback",
                          json={"to": 2}).status_code == 403
    r = admin.request("POST", "/_api/v1/state/prod-hist/rollback", json={"to": 2})
    assert r.status_code == 201
    assert r.json()["version"] == 5 and r.json()["note"] == "rollback to version 2"
    assert writer.request("GET", "/_state/prod-hist").content == state_body(2, v="2")
    assert admin.request("POST", "/_api/v1/state/prod-hist/rollback",
                         json={"to": 99}).status_code == 404
    assert admin.request("POST", "/_api/v1/state/prod-hist/rollback",
                         json={"to": "two"}).status_code == 400

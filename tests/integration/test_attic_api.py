"""Conformance of /_api/v1 with the request forms the attic client sends, and our
extensions; uploads then substitute with the real nix."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.nixenv import Nix
from tests.support.server import FlywheelServer

ERROR_KEYS = {"code", "error", "message"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlywheelServer]:
    server = FlywheelServer(tmp_path_factory.mktemp("attic") / "data").start()
    yield server
    server.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def path_info(nix: Nix, path: str) -> dict[str, object]:
    [info] = json.loads(nix.run("nix", "path-info", "--json", path).stdout)
    return dict(info)


def upload_info(nix: Nix, cache: str, path: str) -> tuple[dict[str, object], bytes]:
    info = path_info(nix, path)
    nar = subprocess.run(["nix-store", "--dump", path], capture_output=True, check=True).stdout
    return {
        "cache": cache,
        "store_path_hash": Path(path).name[:32],
        "store_path": path,
        "references": info["references"],
        "system": None,
        "deriver": info.get("deriver"),
        "sigs": [],
        "ca": None,
        "nar_hash": "sha256:" + hashlib.sha256(nar).hexdigest(),
        "nar_size": len(nar),
    }, nar


def error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == ERROR_KEYS and body["code"] == status
    return str(body["message"])


def test_upload_with_header_and_preamble_then_nix_substitutes(
        srv: FlywheelServer, nix: Nix, other_nix: Nix, tmp_path: Path) -> None:
    srv.cli("cache", "create", "attic-a", "--private")
    token = srv.mint("ci", "--push", "attic-a")
    top = nix.build_closure(tmp_path, files=2)
    closure = nix.closure(top)
    hashes = [Path(p).name[:32] for p in closure]
    r = httpx.post(f"{srv.url}/_api/v1/get-missing-paths", headers=bearer(token),
                   json={"cache": "attic-a", "store_path_hashes": hashes})
    assert r.status_code == 200
    assert sorted(r.json()["missing_paths"]) == sorted(hashes)

    by_refs = sorted(closure, key=lambda p: len(path_info(nix, p)["references"]))  # type: ignore[arg-type]
    for i, path in enumerate(by_refs):
        info, nar = upload_info(nix, "attic-a", path)
        if i % 2:
            headers = {**bearer(token), "X-Attic-Nar-Info": json.dumps(info)}
            body = nar
        else:
            preamble = json.dumps(info).encode()
            headers = {**bearer(token), "X-Attic-Nar-Info-Preamble-Size": str(len(preamble))}
            body = preamble + nar
        r = httpx.put(f"{srv.url}/_api/v1/upload-path", headers=headers, content=body)
        assert r.status_code == 200, r.text
        reply = r.json()
        assert reply["kind"] == "Uploaded"
        assert reply["file_size"] > 0 and reply["frac_deduplicated"] == 0.0

    r = httpx.post(f"{srv.url}/_api/v1/get-missing-paths", headers=bearer(token),
                   json={"cache": "attic-a", "store_path_hashes": hashes})
    assert r.json()["missing_paths"] == []
    key = srv.public_key("attic-a")
    other_nix.copy_from(f"{srv.url}/attic-a", tmp_path / "fresh", top, keys=key,
                        netrc=other_nix.netrc(token))
    assert (tmp_path / "fresh" / top.lstrip("/")).exists()


def test_dedup_wrong_hash_wrong_cache_and_permissions(srv: FlywheelServer, nix: Nix,
                                                      tmp_path: Path) -> None:
    for name in ("attic-b", "attic-c"):
        srv.cli("cache", "create", name, "--private")
    token_b = srv.mint("b", "--push", "attic-b")
    leaf = next(p for p in nix.closure(nix.build_closure(tmp_path, files=1))
                if p.endswith("-leaf"))
    info, nar = upload_info(nix, "attic-b", leaf)
    url = f"{srv.url}/_api/v1/upload-path"

    def put(i: dict[str, object], token: str, body: bytes = nar) -> httpx.Response:
        return httpx.put(url, content=body,
                         headers={**bearer(token), "X-Attic-Nar-Info": json.dumps(i)})

    wrong = dict(info, nar_hash="sha256:" + "0" * 64)
    assert "hashes to" in error(put(wrong, token_b), 400)
    assert "bytes, not the claimed" in error(put(dict(info, nar_size=len(nar) + 8), token_b),
                                             400)
    assert "not a valid NAR" in error(put(info, token_b, b"x" * len(nar)), 400)
    assert error(put(dict(info, store_path_hash="0" * 32), token_b), 400)
    assert "not in the Nix store" in error(put(dict(info, store_path="/etc/passwd"), token_b),
                                           400)
    assert httpx.get(f"{srv.url}/attic-b/{info['store_path_hash']}.narinfo",
                     headers=bearer(token_b)).status_code == 404

    assert put(info, token_b).json()["kind"] == "Uploaded"
    assert put(info, token_b).json()["kind"] == "Deduplicated"
    error(put(dict(info, cache="attic-c"), token_b), 403)
    error(put(dict(info, cache="attic-c"), "not-a-token"), 401)
    error(httpx.put(url, content=nar, headers={"X-Attic-Nar-Info": json.dumps(
        dict(info, cache="attic-c"))}), 401)
    puller = srv.mint("p", "--pull", "attic-b")
    error(put(info, puller), 403)
    assert "upload info missing" in error(httpx.put(url, content=nar, headers=bearer(token_b)),
                                          400)
    error(httpx.put(url, content=b"{}", headers={**bearer(token_b),
                                                 "X-Attic-Nar-Info-Preamble-Size": "99"}), 400)
    error(httpx.put(url, content=nar, headers={**bearer(token_b),
                                               "X-Attic-Nar-Info": "{not json"}), 400)

    admin = srv.mint("ops", "--push", "*")
    r = put(dict(info, cache="attic-c"), admin)
    assert r.json()["kind"] == "Deduplicated"  # same NAR, other cache: bytes stored once
    r = httpx.post(f"{srv.url}/_api/v1/get-missing-paths", headers=bearer(puller),
                   json={"cache": "attic-b", "store_path_hashes": ["bad"]})
    error(r, 400)
    error(httpx.post(f"{srv.url}/_api/v1/get-missing-paths", headers=bearer(puller),
                     json={"cache": "attic-c", "store_path_hashes": []}), 403)


def test_cache_config_crud(srv: FlywheelServer) -> None:
    creator = srv.mint("creator", "--create-cache", "pr-*", "--configure-cache", "pr-*",
                       "--destroy-cache", "pr-*", "--pull", "pr-*")
    url = f"{srv.url}/_api/v1/cache-config/pr-1"
    r = httpx.post(url, headers=bearer(creator),
                   json={"keypair": "Generate", "is_public": False, "priority": 42,
                         "store_dir": "/nix/store",
                         "upstream_cache_key_names": ["cache.nixos.org-1"]})
    assert r.status_code == 201, r.text
    config = r.json()
    assert config["substituter_endpoint"].endswith("/pr-1")
    assert config["public_key"].split(":")[0].endswith("-pr-1-1")
    assert (config["is_public"], config["priority"]) == (False, 42)
    error(httpx.post(url, headers=bearer(creator), json={"keypair": "Generate"}), 409)
    error(httpx.post(f"{srv.url}/_api/v1/cache-config/other", headers=bearer(creator),
                     json={"keypair": "Generate"}), 403)
    error(httpx.post(f"{srv.url}/_api/v1/cache-config/pr-2", headers=bearer(creator),
                     json={"keypair": "Generate", "priority": -5}), 400)
    assert httpx.get(url, headers=bearer(creator)).json() == config
    error(httpx.get(url), 401)

    r = httpx.patch(url, headers=bearer(creator), json={"is_public": True, "priority": 7})
    assert (r.json()["is_public"], r.json()["priority"]) == (True, 7)
    assert httpx.get(url).status_code == 200  # public now
    assert httpx.get(f"{srv.url}/pr-1/attic-cache-info").json()["priority"] == 7
    rotated = httpx.patch(url, headers=bearer(creator), json={"keypair": "Generate"}).json()
    assert rotated["public_key"] != config["public_key"]
    error(httpx.patch(url, headers=bearer(creator), json={"colour": "red"}), 400)

    names = [c["name"] for c in httpx.get(f"{srv.url}/_api/v1/caches").json()["caches"]]
    assert "pr-1" in names and "attic-a" not in names  # private caches stay hidden
    assert httpx.delete(url, headers=bearer(creator)).status_code == 204
    error(httpx.get(url, headers=bearer(creator)), 404)


def test_objects_listing_delete_and_token_api(srv: FlywheelServer, nix: Nix,
                                              tmp_path: Path) -> None:
    srv.cli("cache", "create", "listing")
    top = nix.build_closure(tmp_path, files=1)
    nix.copy_to(f"{srv.url}/listing", top, netrc=nix.netrc(srv.admin_token))
    closure = nix.closure(top)
    url = f"{srv.url}/_api/v1/caches/listing/objects"
    seen: list[str] = []
    after = ""
    while True:
        page = httpx.get(url, params={"limit": 1, "order": "name", "after": after}).json()
        seen += [o["store_path"] for o in page["objects"]]
        if not page["next"]:
            break
        after = page["next"]
    assert sorted(seen) == sorted(closure)
    assert [p.split("-", 1)[1] for p in seen] == sorted(p.split("-", 1)[1] for p in seen)
    newest = httpx.get(url, params={"limit": 10}).json()["objects"]
    assert newest[0]["store_path"] == top  # pushed last: references go first
    error(httpx.get(url, params={"limit": 0}), 400)
    error(httpx.get(url, params={"order": "name", "after": "%%%"}), 400)

    h = Path(top).name[:32]
    error(httpx.delete(f"{url}/{h}"), 401)
    assert httpx.delete(f"{url}/{h}", headers=bearer(srv.admin_token)).status_code == 204
    assert httpx.get(f"{srv.url}/listing/{h}.narinfo").status_code == 404
    error(httpx.delete(f"{url}/{h}", headers=bearer(srv.admin_token)), 404)

    tokens = f"{srv.url}/_api/v1/tokens"
    plain = srv.mint("not-admin", "--pull", "*")
    error(httpx.post(tokens, headers=bearer(plain), json={"sub": "x"}), 403)
    r = httpx.post(tokens, headers=bearer(srv.admin_token),
                   json={"sub": "bot", "validity": "1h", "caches": {"listing": {"r": 1}}})
    assert r.status_code == 201, r.text
    minted = r.json()
    assert httpx.get(f"{srv.url}/listing/nix-cache-info",
                     headers=bearer(minted["token"])).status_code == 200
    error(httpx.post(tokens, headers=bearer(srv.admin_token),
                     json={"sub": "bot", "caches": {"bad/glob": {"r": 1}}}), 400)
    revoke = f"{srv.url}/_api/v1/tokens/revoke"
    error(httpx.post(revoke, headers=bearer(plain), json={"id": minted["id"]}), 403)
    error(httpx.post(revoke, headers=bearer(srv.admin_token), json={}), 400)
    r = httpx.post(revoke, headers=bearer(srv.admin_token), json={"id": minted["id"]})
    assert r.json() == {"revoked": 1}
    assert "revoked" in error(httpx.get(f"{srv.url}/listing/nix-cache-info",
                                        headers=bearer(minted["token"])), 401)
    error(httpx.post(revoke, headers=bearer(srv.admin_token), json={"id": "nope"}), 404)

"""The real nix client pushes to and substitutes from a real flywheel server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.support.nixenv import Nix
from tests.support.server import FlywheelServer

WRONG_KEY = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="


def _hash(path: str) -> str:
    return Path(path).name[:32]


@pytest.mark.parametrize("compression", ["zstd", "xz", "none"])
def test_push_then_substitute_with_signature(server: FlywheelServer, nix: Nix, other_nix: Nix,
                                             tmp_path: Path, compression: str) -> None:
    top = nix.build_closure(tmp_path)
    closure = nix.closure(top)
    netrc = nix.netrc(server.admin_token)
    nix.copy_to(f"{server.url}/main?compression={compression}", top, netrc=netrc)

    for path in closure:
        r = httpx.get(f"{server.url}/main/{_hash(path)}.narinfo")
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/x-nix-narinfo"
        assert f"StorePath: {path}\n" in r.text
        assert f"Compression: {compression}\n" in r.text

    root = tmp_path / "fresh-store"
    other_nix.copy_from(f"{server.url}/main", root, top, keys=server.public_key())
    for path in closure:
        assert (root / path.lstrip("/")).exists()
    leaf = next(p for p in closure if p.endswith("-leaf"))
    copied = root / leaf.lstrip("/")
    assert (copied / "bin/hello").stat().st_mode & 0o111
    assert (copied / "bin/link").is_symlink()
    assert (copied / "share/doc/file-0.txt").read_text() == \
        (Path(leaf) / "share/doc/file-0.txt").read_text()


def test_substitution_refused_without_the_right_key(server: FlywheelServer, nix: Nix,
                                                    other_nix: Nix, tmp_path: Path) -> None:
    top = nix.build_closure(tmp_path, files=1)
    nix.copy_to(f"{server.url}/main", top, netrc=nix.netrc(server.admin_token))

    wrong = other_nix.copy_from(f"{server.url}/main", tmp_path / "s1", top, keys=WRONG_KEY,
                                check=False)
    assert wrong.returncode != 0
    assert "signature" in wrong.stderr

    realised = other_nix.realise(tmp_path / "s2", top, f"{server.url}/main", keys=WRONG_KEY,
                                 check=False)
    assert realised.returncode != 0
    assert not (tmp_path / "s2" / top.lstrip("/")).exists()

    ok = other_nix.realise(tmp_path / "s3", top, f"{server.url}/main", keys=server.public_key())
    assert top in ok.stdout
    assert (tmp_path / "s3" / top.lstrip("/")).exists()


def test_pusher_never_needs_the_signing_key(server: FlywheelServer, nix: Nix,
                                            tmp_path: Path) -> None:
    """A signature a pusher forges under the cache's key name is replaced by the real one."""
    top = nix.build_closure(tmp_path, files=1)
    key_name = server.public_key().split(":")[0]
    forged_key = tmp_path / "forged.sec"
    nix.run("nix-store", "--generate-binary-cache-key", key_name, str(forged_key),
            str(tmp_path / "forged.pub"))
    nix.copy_to(f"{server.url}/main?secret-key={forged_key}", top,
                netrc=nix.netrc(server.admin_token))
    text = httpx.get(f"{server.url}/main/{_hash(top)}.narinfo").text
    sigs = [line for line in text.splitlines() if line.startswith("Sig: ")]
    assert len(sigs) == 1
    from flywheel.nix.narinfo import fingerprint, parse
    from flywheel.nix.signing import PublicKey

    info = parse(text)
    assert PublicKey.parse(server.public_key()).verify(fingerprint(info), info.sigs[0])


def test_private_cache_needs_a_token(server: FlywheelServer, nix: Nix, other_nix: Nix,
                                     tmp_path: Path) -> None:
    server.cli("cache", "create", "secret", "--private")
    key = server.public_key("secret")
    top = nix.build_closure(tmp_path, files=1)
    pusher = server.mint("ci", "--push", "secret")
    nix.copy_to(f"{server.url}/secret", top, netrc=nix.netrc(pusher))

    url = f"{server.url}/secret/{_hash(top)}.narinfo"
    anonymous = httpx.get(url)
    assert anonymous.status_code == 401
    assert "www-authenticate" in anonymous.headers
    other = server.mint("other", "--pull", "main")
    assert httpx.get(url, headers={"Authorization": f"Bearer {other}"}).status_code == 403
    reader = server.mint("reader", "--pull", "secret")
    assert httpx.get(url, headers={"Authorization": f"Bearer {reader}"}).status_code == 200
    assert httpx.get(url, auth=("anyone", reader)).status_code == 200
    assert httpx.get(f"{server.url}/secret/nix-cache-info").status_code == 401

    denied = other_nix.copy_from(f"{server.url}/secret", tmp_path / "s1", top, keys=key,
                                 check=False)
    assert denied.returncode != 0
    other_nix.copy_from(f"{server.url}/secret", tmp_path / "s2", top, keys=key,
                        netrc=other_nix.netrc(reader))
    assert (tmp_path / "s2" / top.lstrip("/")).exists()


def test_revoked_token_is_refused_at_once(server: FlywheelServer, nix: Nix,
                                          tmp_path: Path) -> None:
    server.cli("cache", "create", "team", "--private")
    token = server.mint("ci-bot", "--push", "team")
    first = nix.build_closure(tmp_path, files=1)
    nix.copy_to(f"{server.url}/team", first, netrc=nix.netrc(token))
    url = f"{server.url}/team/{_hash(first)}.narinfo"
    assert httpx.get(url, auth=("x", token)).status_code == 200

    server.cli("token", "revoke", "--sub", "ci-bot")
    refused = httpx.get(url, auth=("x", token))
    assert refused.status_code == 401
    assert "revoked" in refused.json()["message"]
    second = nix.build_closure(tmp_path, files=1)
    push = nix.copy_to(f"{server.url}/team", second, netrc=nix.netrc(token), check=False)
    assert push.returncode != 0
    assert httpx.get(f"{server.url}/team/{_hash(second)}.narinfo",
                     auth=("x", server.admin_token)).status_code == 404

    # Minted after the subject's revocation (in the same second, too), so it works.
    fresh = server.mint("ci-bot", "--push", "team")
    assert fresh != token
    assert httpx.get(url, auth=("x", fresh)).status_code == 200


def test_revoke_single_token_by_id(server: FlywheelServer) -> None:
    proc = server.cli("token", "mint", "--sub", "one", "--pull", "*")
    token = proc.stdout.strip()
    token_id = proc.stderr.split("token id ")[1].split()[0]
    assert httpx.get(f"{server.url}/main/nix-cache-info",
                     headers={"Authorization": f"Bearer {token}"}).status_code == 200
    server.cli("token", "revoke", "--id", token_id)
    assert httpx.get(f"{server.url}/main/nix-cache-info",
                     headers={"Authorization": f"Bearer {token}"}).status_code == 401
    listing = server.cli("token", "list", "--sub", "one", "--json").stdout
    assert token not in listing
    [row] = json.loads(listing)
    assert row["id"] == token_id
    assert row["revoked_at"] is not None


def test_concurrent_pushes_of_one_closure_end_consistent(server: FlywheelServer, nix: Nix,
                                                         other_nix: Nix,
                                                         tmp_path: Path) -> None:
    import subprocess

    top = nix.build_closure(tmp_path, files=6, size=20_000)
    closure = nix.closure(top)
    netrc = nix.netrc(server.admin_token)
    procs = []
    for i in range(8):
        client = Nix(tmp_path / f"pusher-{i}")
        procs.append(subprocess.Popen(
            ["nix", "copy", "--netrc-file", str(netrc), "--to",
             f"{server.url}/main?compression={'zstd' if i % 2 else 'xz'}", top],
            env=client.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr

    for path in closure:
        assert httpx.get(f"{server.url}/main/{_hash(path)}.narinfo").status_code == 200
    other_nix.copy_from(f"{server.url}/main", tmp_path / "fresh", top,
                        keys=server.public_key())
    # One stored copy of each NAR even though two compressions raced.
    blobs = list((server.data_dir / "blobs").rglob("*"))
    assert len([b for b in blobs if b.is_file()]) == len(closure)
    assert server.cli("fsck", "--grace", "0").returncode == 0


def test_same_path_in_two_caches_is_stored_once(server: FlywheelServer, nix: Nix,
                                                tmp_path: Path) -> None:
    server.cli("cache", "create", "second")
    top = nix.build_closure(tmp_path, files=1)
    closure = nix.closure(top)
    netrc = nix.netrc(server.admin_token)
    nix.copy_to(f"{server.url}/main", top, netrc=netrc)
    Nix(tmp_path / "pusher-2").copy_to(f"{server.url}/second?compression=xz", top,
                                       netrc=netrc)
    blobs = [b for b in (server.data_dir / "blobs").rglob("*") if b.is_file()]
    assert len(blobs) == len(closure)
    for cache in ("main", "second"):
        info = httpx.get(f"{server.url}/{cache}/{_hash(top)}.narinfo").text
        nar_url = next(line.split(": ")[1] for line in info.splitlines()
                       if line.startswith("URL: "))
        assert httpx.get(f"{server.url}/{cache}/{nar_url}").status_code == 200


def test_data_survives_restart(server: FlywheelServer, nix: Nix, other_nix: Nix,
                               tmp_path: Path) -> None:
    top = nix.build_closure(tmp_path, files=2)
    key = server.public_key()
    token = server.admin_token
    nix.copy_to(f"{server.url}/main", top, netrc=nix.netrc(token))
    server.restart()
    assert server.public_key() == key
    assert server.admin_token == token
    other_nix.copy_from(f"{server.url}/main", tmp_path / "after", top, keys=key)
    assert (tmp_path / "after" / top.lstrip("/")).exists()


def test_delete_one_path_from_one_cache(server: FlywheelServer, nix: Nix,
                                        tmp_path: Path) -> None:
    server.cli("cache", "create", "other")
    top = nix.build_closure(tmp_path, files=1)
    netrc = nix.netrc(server.admin_token)
    nix.copy_to(f"{server.url}/main", top, netrc=netrc)
    Nix(tmp_path / "p2").copy_to(f"{server.url}/other", top, netrc=netrc)
    url = f"{server.url}/main/{_hash(top)}.narinfo"

    puller = server.mint("puller", "--pull", "*")
    assert httpx.delete(url, auth=("x", puller)).status_code == 403
    assert httpx.delete(url).status_code == 401
    deleter = server.mint("janitor", "--delete", "main")
    assert httpx.delete(url, auth=("x", deleter)).status_code == 204
    assert httpx.get(url).status_code == 404
    assert httpx.delete(url, auth=("x", deleter)).status_code == 404
    assert httpx.get(f"{server.url}/other/{_hash(top)}.narinfo").status_code == 200

    server.cli("cache", "delete-path", "other", top)
    assert httpx.get(f"{server.url}/other/{_hash(top)}.narinfo").status_code == 404
    missing = server.cli("cache", "delete-path", "other", top, check=False)
    assert missing.returncode != 0
    assert "is not in cache" in missing.stderr

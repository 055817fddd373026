"""The ``flywheel`` command: first start, caches, tokens, configuration errors."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import httpx
import jwt

from flywheel.auth.permissions import ATTIC_CLAIM
from flywheel.nix.narinfo import fingerprint, parse
from flywheel.nix.signing import PublicKey
from tests.support.nixenv import Nix
from tests.support.server import FLYWHEEL, FlywheelServer, clean_env, free_port, run_cli


def test_first_start_creates_and_second_start_reuses(tmp_path: Path) -> None:
    srv = FlywheelServer(tmp_path / "data").start()
    try:
        token_file = srv.data_dir / "admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((srv.data_dir / "token-secret").stat().st_mode) == 0o600
        token = srv.admin_token
        assert str(token_file) in srv.log()
        assert token not in srv.log()
        key = srv.public_key()
        assert key.split(":")[0].endswith("-main-1")
        assert httpx.get(f"{srv.url}/main/nix-cache-info").text == \
            "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 41\n"
        srv.restart()
        assert srv.admin_token == token
        assert srv.public_key() == key
        assert json.loads(srv.cli("cache", "list", "--json").stdout)[0]["name"] == "main"
        assert token not in srv.log()
    finally:
        srv.stop()


def test_serve_reads_env_and_toml(tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "flywheel.toml"
    cfg.write_text(f'listen = "127.0.0.1:{port}"\nworkers = 1\n')
    data = tmp_path / "env-data"
    proc = subprocess.Popen([FLYWHEEL, "serve", "--config", str(cfg)],
                            env=clean_env({"FLYWHEEL_DATA_DIR": str(data)}),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                import time
                time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").text == "ok\n"
        assert (data / "admin-token").exists()
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_refuses_bad_configuration(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('listen = "everywhere"\nworkers = 0\n')
    proc = subprocess.run([FLYWHEEL, "serve", "--config", str(cfg), "--data-dir",
                           str(tmp_path / "d")], capture_output=True, text=True,
                          env=clean_env(), timeout=60)
    assert proc.returncode == 2
    assert "listen: not HOST:PORT" in proc.stderr
    assert "workers: Input should be greater than or equal to 1" in proc.stderr
    assert not (tmp_path / "d").exists()
    proc = subprocess.run([FLYWHEEL, "serve", "--listen", "x"], capture_output=True,
                          text=True, env=clean_env({"FLYWHEEL_DATA_DIR": str(tmp_path / "e")}),
                          timeout=60)
    assert proc.returncode == 2
    assert not (tmp_path / "e").exists()


def test_cache_lifecycle(tmp_path: Path) -> None:
    data = tmp_path / "data"
    out = run_cli(data, "cache", "create", "team-x", "--private", "--priority", "30").stdout
    assert "Created private cache 'team-x'" in out
    assert "Public Key: " in out
    info = json.loads(run_cli(data, "cache", "info", "team-x", "--json").stdout)
    assert info["is_public"] is False
    assert info["priority"] == 30
    assert info["substituter_endpoint"] == "http://127.0.0.1:8080/team-x"
    text = run_cli(data, "cache", "info", "team-x").stdout
    assert f"Public Key: {info['public_key']}" in text

    dup = run_cli(data, "cache", "create", "team-x", check=False)
    assert dup.returncode == 1
    assert "already exists" in dup.stderr
    for bad in ("Team", "_api", "_ui", "a" * 51, ".x"):
        r = run_cli(data, "cache", "create", bad, check=False)
        assert r.returncode == 1, bad
        assert "invalid cache name" in r.stderr

    run_cli(data, "cache", "configure", "team-x", "--public", "--priority", "10",
            "--upstream-key", "cache.nixos.org-1", "--upstream-key", "corp-1")
    info = json.loads(run_cli(data, "cache", "info", "team-x", "--json").stdout)
    assert (info["is_public"], info["priority"]) == (True, 10)
    assert info["upstream_cache_key_names"] == ["cache.nixos.org-1", "corp-1"]
    bad = run_cli(data, "cache", "configure", "team-x", "--priority", "-1", check=False)
    assert bad.returncode != 0

    assert "team-x" in run_cli(data, "cache", "list").stdout
    refused = run_cli(data, "cache", "destroy", "team-x", input="n\n", check=False)
    assert refused.returncode == 1
    run_cli(data, "cache", "destroy", "team-x", "--yes")
    gone = run_cli(data, "cache", "info", "team-x", check=False)
    assert gone.returncode == 1
    assert "no cache named 'team-x'" in gone.stderr


def test_token_mint_claims(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = run_cli(data, "token", "mint", "--sub", "ci", "--validity", "2d",
                    "--pull", "main", "--push", "team-*", "--delete", "team-*",
                    "--create-cache", "pr-*", "--configure-cache", "pr-*",
                    "--destroy-cache", "pr-*").stdout.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "ci"
    assert claims["exp"] - claims["iat"] == 2 * 86400
    assert claims[ATTIC_CLAIM]["caches"] == {
        "main": {"r": 1},
        "team-*": {"r": 1, "w": 1, "d": 1},
        "pr-*": {"cc": 1, "cr": 1, "cq": 1, "cd": 1},
    }
    for args, msg in ((["--pull", "bad/glob"], "invalid cache pattern"),
                      (["--validity", "soon", "--pull", "x"], "not a duration"),
                      ([], "a token needs at least one of")):
        r = run_cli(data, "token", "mint", "--sub", "x", *args, check=False)
        assert r.returncode != 0
        assert msg in r.stderr
    r = run_cli(data, "token", "revoke", check=False)
    assert r.returncode == 2
    r = run_cli(data, "token", "revoke", "--id", "nope", check=False)
    assert r.returncode == 1
    assert "no token with id" in r.stderr


def test_key_rotation_resigns_every_path(server: FlywheelServer, nix: Nix, other_nix: Nix,
                                        tmp_path: Path) -> None:
    top = nix.build_closure(tmp_path, files=1)
    nix.copy_to(f"{server.url}/main", top, netrc=nix.netrc(server.admin_token))
    old_key = server.public_key()
    out = server.cli("cache", "configure", "main", "--regenerate-keypair").stdout
    new_key = server.public_key()
    assert new_key != old_key
    assert new_key.split(":")[0].endswith("-main-2")
    assert f"Public Key: {new_key}" in out
    info = parse(httpx.get(f"{server.url}/main/{Path(top).name[:32]}.narinfo").text)
    assert len(info.sigs) == 1
    assert PublicKey.parse(new_key).verify(fingerprint(info), info.sigs[0])
    assert not PublicKey.parse(old_key).verify(fingerprint(info), info.sigs[0])
    other_nix.copy_from(f"{server.url}/main", tmp_path / "s", top, keys=new_key)


def test_serve_refuses_a_port_already_in_use(server: FlywheelServer, tmp_path: Path) -> None:
    proc = subprocess.run([FLYWHEEL, "serve", "--data-dir", str(tmp_path / "second"),
                           "--listen", f"127.0.0.1:{server.port}",
                           "--grpc-listen", f"127.0.0.1:{free_port()}"],
                          capture_output=True, text=True, env=clean_env(), timeout=60)
    assert proc.returncode == 1
    assert f"cannot listen for HTTP on 127.0.0.1:{server.port}" in proc.stderr
    proc = subprocess.run([FLYWHEEL, "serve", "--data-dir", str(tmp_path / "third"),
                           "--listen", f"127.0.0.1:{free_port()}",
                           "--grpc-listen", server.grpc_target],
                          capture_output=True, text=True, env=clean_env(), timeout=60)
    assert proc.returncode == 1
    assert "cannot listen for gRPC" in proc.stderr
    assert httpx.get(f"{server.url}/healthz").status_code == 200

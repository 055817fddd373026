"""The ``flywheel`` client end to end: the real commands driving the real nix against a
real ``flywheel serve`` (the pieces are tested in tests/unit/client)."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import typer

from flywheel.cli import remote
from flywheel.client import profiles
from flywheel.client.api import Api
from flywheel.client.errors import ApiError
from tests.support.clientenv import Client, build_chain, nix_with_user_conf, summary
from tests.support.nixenv import Nix
from tests.support.server import FlywheelServer

# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlywheelServer]:
    server = FlywheelServer(tmp_path_factory.mktemp("client-server") / "data").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(tmp_path: Path) -> Client:
    return Client(tmp_path / "client")


def _cache(srv: FlywheelServer, name: str, *flags: str) -> str:
    srv.cli("cache", "create", name, *flags)
    return name


def _present(srv: FlywheelServer, cache: str, paths: list[str]) -> list[str]:
    missing = set(httpx.post(f"{srv.url}/_api/v1/get-missing-paths",
                             json={"cache": cache,
                                   "store_path_hashes": [Path(p).name[:32] for p in paths]},
                             headers={"authorization": f"Bearer {srv.admin_token}"}
                             ).json()["missing_paths"])
    return [p for p in paths if Path(p).name[:32] not in missing]


def test_login_checks_the_server_and_the_token(srv: FlywheelServer, client: Client) -> None:
    bad = client.run("login", "x", "ftp://127.0.0.1", check=False)
    assert bad.returncode == 1 and "http:// or https://" in bad.stderr
    down = client.run("login", "x", "http://127.0.0.1:9", check=False)
    assert down.returncode == 1 and "cannot reach" in down.stderr
    wrong = client.run("login", "x", srv.url, "not-a-token", check=False)
    assert wrong.returncode == 1 and "rejected the token" in wrong.stderr
    assert not (client.config_home / "flywheel").exists()

    client.run("login", "anon", srv.url + "/")
    client.run("login", "admin", srv.url, "-", input=srv.admin_token + "\n")
    saved = profiles.load(client.config_home / "flywheel" / "config.toml")
    assert saved.default == "anon"
    assert saved.select("admin") == profiles.Profile("admin", srv.url, srv.admin_token)
    client.run("login", "admin", srv.url, srv.admin_token, "--set-default")
    assert profiles.load(client.config_home / "flywheel" / "config.toml").default == "admin"


def test_push_then_real_nix_substitutes_and_a_repush_uploads_nothing(
        srv: FlywheelServer, client: Client, nix: Nix, other_nix: Nix, tmp_path: Path) -> None:
    cache = _cache(srv, "push-e2e")
    top = nix.build_closure(tmp_path, files=3, size=200_000)
    closure = nix.closure(top)
    assert len(closure) == 3
    client.login(srv, srv.mint("ci", "--push", cache))
    (tmp_path / "result").symlink_to(top)

    first = client.push(cache, str(tmp_path / "result"), "-j", "2")
    assert summary(first.stdout) == dict(pushed=3, deduplicated=0, skipped=0, present=0,
                                         upstream=0, failed=0)
    assert _present(srv, cache, closure) == closure

    root = tmp_path / "fresh-store"
    other_nix.copy_from(f"{srv.url}/{cache}", root, top, keys=srv.public_key(cache))
    for path in closure:
        assert (root / path.lstrip("/")).exists()

    again = client.push(cache, top)
    assert summary(again.stdout) == dict(pushed=0, deduplicated=0, skipped=3, present=3,
                                         upstream=0, failed=0)
    assert "nothing to push" in again.stdout


def test_no_closure_upstream_filter_and_refusals(srv: FlywheelServer, client: Client,
                                                 nix: Nix, tmp_path: Path) -> None:
    cache = "upstream-e2e"
    key = tmp_path / "upstream.sec"
    nix.run("nix-store", "--generate-binary-cache-key", "flywheel-upstream-test-1", str(key),
            str(tmp_path / "upstream.pub"))
    leaf, middle, top = build_chain(nix, tmp_path, [1000, 1000, 1000])
    nix.run("nix", "store", "sign", "--key-file", str(key), leaf)
    client.login(srv, srv.admin_token)
    srv.cli("cache", "create", cache)
    srv.cli("cache", "configure", cache, "--upstream-key", "flywheel-upstream-test-1")

    only_top = client.push(cache, top, "--no-closure")
    assert summary(only_top.stdout)["pushed"] == 1
    filtered = client.push(cache, top)
    assert summary(filtered.stdout) == dict(pushed=1, deduplicated=0, skipped=2, present=1,
                                            upstream=1, failed=0)
    assert _present(srv, cache, [leaf, middle, top]) == [middle, top]
    ignored = client.run("push", cache, "--stdin", "--ignore-upstream-filter",
                         input=f"{top}\n")
    assert summary(ignored.stdout)["pushed"] == 1
    assert _present(srv, cache, [leaf]) == [leaf]

    # A pull-only token: the server's refusal is shown, not retried, and fails the push.
    other = build_chain(nix, tmp_path, [1000, 1000])
    reader = Client(tmp_path / "reader")
    reader.login(srv, srv.mint("reader", "--pull", cache))
    refused = reader.push(cache, other[-1], check=False)
    assert refused.returncode == 1
    assert "retrying" not in refused.stderr
    assert summary(refused.stdout)["failed"] == 2
    assert "may not push" in refused.stderr, refused.stderr
    missing = reader.run("push", "no-such-cache", other[-1], check=False)
    assert missing.returncode == 1 and "no-such-cache" in missing.stderr


def test_use_makes_plain_nix_store_r_substitute(srv: FlywheelServer, client: Client,
                                                nix: Nix, tmp_path: Path) -> None:
    cache = _cache(srv, "use-e2e", "--private")
    token = srv.mint("dev", "--push", cache)
    client.login(srv, token)
    top = nix.build_closure(tmp_path, files=1)
    client.push(cache, top)

    conf = tmp_path / "user-nix.conf"
    conf.write_text("# my settings\nkeep-outputs = true\n")
    nix_env = nix_with_user_conf(tmp_path / "nix-user", conf)
    root = tmp_path / "store-root"
    realise = ["nix-store", "--store", str(root), "-r", top]
    before = subprocess.run(realise, capture_output=True, text=True, env=nix_env, timeout=120)
    assert before.returncode != 0

    used = client.run("use", cache, env={"NIX_USER_CONF_FILES": nix_env["NIX_USER_CONF_FILES"]})
    assert "changed" in used.stdout
    netrc_file = client.config_home / "nix" / "netrc"
    assert netrc_file.read_text() == f"machine 127.0.0.1 password {token}\n"
    assert stat.S_IMODE(netrc_file.stat().st_mode) == 0o600
    text = conf.read_text()
    assert text.startswith("# my settings\nkeep-outputs = true\n")
    assert f"extra-substituters = {srv.url}/{cache}\n" in text
    assert f"extra-trusted-public-keys = {srv.public_key(cache)}\n" in text
    assert f"netrc-file = {netrc_file}\n" in text

    again = client.run("use", cache, "--nix-conf", str(conf))
    assert "nothing changed" in again.stdout
    assert conf.read_text() == text

    proc = subprocess.run(realise, capture_output=True, text=True, env=nix_env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for path in nix.closure(top):
        assert (root / path.lstrip("/")).exists()


def test_watch_store_pushes_what_a_later_build_makes(srv: FlywheelServer, client: Client,
                                                    nix: Nix, tmp_path: Path) -> None:
    cache = _cache(srv, "watch-e2e")
    client.login(srv, srv.mint("watcher", "--push", cache))
    watcher = client.popen("watch-store", cache)
    try:
        assert watcher.stderr is not None
        line = watcher.stderr.readline()
        assert "watching" in line, line + watcher.stderr.read()
        top = nix.build_closure(tmp_path, files=2)
        closure = nix.closure(top)
        deadline = time.monotonic() + 30
        while _present(srv, cache, closure) != closure and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _present(srv, cache, closure) == closure
        watcher.send_signal(signal.SIGTERM)
        stdout, stderr = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert watcher.returncode == 0, stderr
    got = summary(stdout)
    assert got["pushed"] + got["deduplicated"] >= 3 and got["failed"] == 0
    drvs = [p for p in nix.run("nix-store", "-qd", top).stdout.split()]
    assert _present(srv, cache, drvs) == []


def test_a_killed_push_resumes_without_reuploading(srv: FlywheelServer, client: Client,
                                                   nix: Nix, tmp_path: Path) -> None:
    cache = _cache(srv, "resume-e2e")
    client.login(srv, srv.mint("ci", "--push", cache))
    # Small first path, then a big one: the kill lands while the big one streams.
    chain = build_chain(nix, tmp_path, [1000, 1000, 96 << 20, 1000])
    proc = client.popen("push", cache, chain[-1], "-j", "1")
    try:
        deadline = time.monotonic() + 30
        while not _present(srv, cache, chain) and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    landed = _present(srv, cache, chain)
    assert 1 <= len(landed) < len(chain), f"kill came too late: {landed}"
    assert landed == chain[:len(landed)], "uploads landed out of dependency order"

    resumed = client.push(cache, chain[-1])
    got = summary(resumed.stdout)
    assert got == dict(pushed=len(chain) - len(landed), deduplicated=0,
                       skipped=len(landed), present=len(landed), upstream=0, failed=0)
    assert _present(srv, cache, chain) == chain


def test_remote_cache_and_token_admin(srv: FlywheelServer, client: Client,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    client.login(srv, srv.admin_token, name="prod")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(client.config_home))
    remote.cache_create("prod", "admin-e2e", private=True, priority=30)
    assert "Created private cache 'admin-e2e'" in capsys.readouterr().out
    remote.cache_info("prod", "admin-e2e", as_json=True)
    info = json.loads(capsys.readouterr().out)
    assert (info["name"], info["is_public"], info["priority"]) == ("admin-e2e", False, 30)

    remote.cache_configure("prod", "admin-e2e", public=True, priority=None, upstream_key=None,
                           regenerate_keypair=True)
    capsys.readouterr()
    remote.cache_list("prod", as_json=True)
    listed = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert listed["admin-e2e"]["is_public"] is True
    assert listed["admin-e2e"]["public_key"] != info["public_key"]

    remote.token_mint("prod", "robot", validity="1d", pull=["admin-*"], push=[], delete=[],
                      create_cache=[], configure_cache=["admin-e2e"], destroy_cache=[],
                      admin_token=False, workspaces={})
    captured = capsys.readouterr()
    token = captured.out.strip()
    token_id = captured.err.split("token id ")[1].split()[0]
    robot = Api(profiles.Profile("robot", srv.url, token))
    assert robot.cache_config("admin-e2e").priority == 30
    remote.token_revoke("prod", token_id=token_id, sub=None)
    with pytest.raises(ApiError) as refused:
        robot.cache_config("admin-e2e")
    assert refused.value.status == 401
    robot.close()
    (listed_token,) = remote.token_list("prod", "robot")
    assert (listed_token.id, listed_token.sub) == (token_id, "robot")
    assert listed_token.revoked_at is not None and token not in listed_token.model_dump_json()

    remote.cache_destroy("prod", "admin-e2e", yes=True)
    with pytest.raises(typer.Exit):
        remote.cache_info("prod", "admin-e2e", as_json=False)
    assert "admin-e2e" in capsys.readouterr().err

"""`flywheel runner setup` with the real programs: after it, with the variables a rendered
pool injects, a plain `nix-store -r` substitutes from a running `flywheel serve`, a plain
`bazel build` gets remote-cache hits, and an unreachable server leaves the job green."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.fleet.conftest import CACHE
from tests.fleet.runnerenv import Runner, pool_variables
from tests.support.bazelenv import Bazel
from tests.support.nixenv import Nix
from tests.support.server import FLYWHEEL, FlywheelServer, free_port


@pytest.fixture(scope="module")
def writer(srv: FlywheelServer) -> str:
    return srv.mint("ci-runner", "--push", CACHE)


def pool(srv: FlywheelServer, token: str) -> dict[str, str]:
    return pool_variables(srv.url, CACHE, token, lookup_token=srv.admin_token)


def setup(runner: Runner, env: dict[str, str], *args: str) -> str:
    proc = runner.run(FLYWHEEL, "runner", "setup", *args, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_plain_nix_substitutes_after_setup(srv: FlywheelServer, writer: str,
                                           tmp_path: Path) -> None:
    builder = Nix(tmp_path / "builder")
    path = builder.build_closure(tmp_path)
    closure = builder.closure(path)
    builder.copy_to(f"{srv.url}/{CACHE}", path, netrc=builder.netrc(writer))
    builder.run("nix-store", "--delete", *closure)
    runner = Runner(tmp_path / "runner")
    env = runner.env(pool(srv, writer))

    before = runner.run("nix-store", "-r", path, env=env)
    assert before.returncode != 0   # NIX_CONFIG alone names the cache, but it is private

    said = setup(runner, env)
    assert f"Nix substitutes from {srv.url}/{CACHE}, trusting {srv.public_key(CACHE)}" in said
    conf = runner.nix_conf.read_text()
    assert f"extra-substituters = {srv.url}/{CACHE}\n" in conf
    assert f"extra-trusted-public-keys = {srv.public_key(CACHE)}\n" in conf
    netrc = runner.home / "config" / "nix" / "netrc"
    assert f"netrc-file = {netrc}\n" in conf
    assert netrc.read_text() == f"machine 127.0.0.1 password {writer}\n"

    after = runner.run("nix-store", "-r", path, env=env)
    assert after.returncode == 0, after.stderr
    assert f"copying path '{path}' from '{srv.url}/{CACHE}'" in after.stderr
    assert all(Path(p).exists() for p in closure)

    again = setup(runner, env)      # idempotent
    assert f"{runner.nix_conf}: already substitutes from {srv.url}/{CACHE}" in again
    assert runner.nix_conf.read_text() == conf


@pytest.mark.skipif(not Bazel.available(), reason="bazel-bootstrap not installed")
def test_plain_bazel_gets_remote_cache_hits_after_setup(srv: FlywheelServer, writer: str,
                                                        tmp_path: Path) -> None:
    runner = Runner(tmp_path / "runner")
    env = runner.env(pool(srv, writer))
    try:
        said = setup(runner, env)
        fragment = runner.home / "config" / "flywheel" / "runner" / "remote-cache.bazelrc"
        assert f"{fragment}: --remote_cache={srv.url}/{CACHE} with the token" in said
        assert (runner.home / ".bazelrc").read_text() == f"try-import {fragment}\n"
        assert fragment.stat().st_mode & 0o777 == 0o600

        cold, _ = runner.bazel_build(env)
        assert cold.remote_cache_hit == 0 and cold.executed == cold.cacheable > 0
        warm, _ = runner.bazel_build(env)
        assert warm.remote_cache_hit == warm.cacheable == cold.cacheable
        assert warm.executed == 0

        # A token that may only read: hits, and no upload attempts (so no warnings).
        reader = pool(srv, srv.mint("reader", "--pull", CACHE))
        read_env = runner.env(reader)
        said = setup(runner, read_env)
        assert "--remote_upload_local_results=false (the token may not write)" in said
        assert fragment.read_text().endswith("build --remote_upload_local_results=false\n")
        hits, output = runner.bazel_build(read_env)
        assert hits.remote_cache_hit == hits.cacheable
        assert "Remote Cache" not in output
    finally:
        runner.bazel_shutdown(env)


def test_unreachable_server_warns_and_exits_zero(tmp_path: Path, srv: FlywheelServer,
                                                 writer: str) -> None:
    runner = Runner(tmp_path / "runner")
    dead = f"http://127.0.0.1:{free_port()}"
    variables = {k: v.replace(srv.url, dead) for k, v in pool(srv, writer).items()}
    outputs = tmp_path / "outputs"
    github_env = tmp_path / "github-env"
    env = runner.env(variables, GITHUB_ACTIONS="true", GITHUB_OUTPUT=str(outputs),
                     GITHUB_ENV=str(github_env))
    said = setup(runner, env)
    assert f"::warning::cannot reach the cache server at {dead}" in said
    assert said.rstrip().endswith("the job runs without the cache")
    assert not runner.nix_conf.exists()
    assert outputs.read_text() == "reachable=false\ncan-push=false\n"
    # Later steps run without the dead substituter (nothing else was in NIX_CONFIG).
    assert github_env.read_text() == "NIX_CONFIG=\n"


def test_setup_without_wiring_and_with_a_rotated_key(tmp_path: Path, srv: FlywheelServer,
                                                     writer: str) -> None:
    runner = Runner(tmp_path / "runner")
    nothing = setup(runner, runner.env({}))
    assert "warning: FLYWHEEL_URL is not set: no cache is wired into this runner" in nothing
    variables = pool(srv, writer)
    variables["NIX_CONFIG"] = variables["NIX_CONFIG"].replace(srv.public_key(CACHE),
                                                              "old-key-1:AAAA")
    said = setup(runner, runner.env(variables))
    assert f"now signs with {srv.public_key(CACHE)}, but this pool was rendered with " \
           "old-key-1:AAAA" in said
    assert "extra-trusted-public-keys = old-key-1:AAAA" in runner.nix_conf.read_text()


def test_the_write_probe_stores_nothing(srv: FlywheelServer, writer: str) -> None:
    before = httpx.get(f"{srv.url}/status",
                       headers={"Authorization": f"Bearer {srv.admin_token}"}).json()
    from flywheel.fleet.runner.setup import may_write
    from flywheel.fleet.wiring import InjectedWiring

    for token, allowed in ((writer, True), (srv.mint("r", "--pull", CACHE), False),
                           (None, False)):
        wiring = InjectedWiring(srv.url, CACHE, CACHE, token, None)
        headers = {"authorization": f"Bearer {token}"} if token else {}
        with httpx.Client(headers=headers) as http:
            assert may_write(http, wiring, CACHE) is allowed
    after = httpx.get(f"{srv.url}/status",
                      headers={"Authorization": f"Bearer {srv.admin_token}"}).json()
    assert after["caches"][CACHE]["bazel"] == before["caches"][CACHE]["bazel"]


def test_an_unwritable_home_is_a_warning_not_a_failure(tmp_path: Path, srv: FlywheelServer,
                                                       writer: str) -> None:
    runner = Runner(tmp_path / "runner")
    runner.nix_conf.parent.parent.mkdir(parents=True)
    runner.nix_conf.parent.write_text("a file where nix.conf's directory should be")
    said = setup(runner, runner.env(pool(srv, writer)))
    assert "warning: could not set the caches up: cannot read " in said
    assert said.rstrip().endswith("Not a directory; the job runs without them")

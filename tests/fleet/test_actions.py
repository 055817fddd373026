"""The composite actions under actions/, run as the Actions runner would run them: every
reference between them resolves, their inputs and outputs are documented, and jobs using
them reach the cache (or stay green without it)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.fleet.actionrunner import Job, run_action
from tests.fleet.conftest import CACHE, REPO
from tests.fleet.runnerenv import Runner, pool_variables
from tests.support.bazelenv import Bazel
from tests.support.server import FlywheelServer, free_port

ACTIONS = REPO / "actions"
SCRIPT_REF = "$GITHUB_ACTION_PATH/"


def problems(actions: Path) -> list[str]:
    """What would break for a workflow using these actions: `uses:` paths and scripts that
    are missing, undocumented inputs and outputs."""
    found = []
    for path in sorted(actions.glob("*/action.yml")):
        action: dict[str, Any] = yaml.safe_load(path.read_text())
        where = path.relative_to(actions.parent)
        for kind in ("inputs", "outputs"):
            for name, spec in (action.get(kind) or {}).items():
                if not (spec or {}).get("description"):
                    found.append(f"{where}: {kind[:-1]} {name!r} has no description")
        for step in action["runs"]["steps"]:
            uses = step.get("uses", "")
            if uses.startswith("./") and not (actions.parent / uses / "action.yml").is_file():
                found.append(f"{where}: uses {uses}, which does not exist")
            run = step.get("run", "")
            if SCRIPT_REF in run:
                script = run.split(SCRIPT_REF, 1)[1].split('"')[0].split()[0]
                target = path.parent / script
                if not target.is_file() or not target.stat().st_mode & 0o111:
                    found.append(f"{where}: runs {script}, which is not an executable file")
    return found


def test_every_reference_between_the_actions_resolves() -> None:
    names = sorted(p.parent.name for p in ACTIONS.glob("*/action.yml"))
    assert names == ["bazel-job", "nix-job", "setup-flywheel"]
    assert problems(ACTIONS) == []
    scripts = [s for p in ACTIONS.glob("*/action.yml")
               for s in yaml.safe_load(p.read_text())["runs"]["steps"]
               if SCRIPT_REF in s.get("run", "")]
    assert len(scripts) == 4     # the checker saw every reference


def test_the_reference_check_finds_broken_actions(tmp_path: Path) -> None:
    broken = tmp_path / "actions" / "nix-job"
    broken.mkdir(parents=True)
    (broken / "action.yml").write_text(yaml.safe_dump({
        "name": "x", "description": "x", "inputs": {"run": {"required": True}},
        "runs": {"using": "composite", "steps": [
            {"uses": "./actions/setup-flywheel"},
            {"shell": "bash", "run": '"$GITHUB_ACTION_PATH/../setup-flywheel/setup.sh"'}]}}))
    assert problems(tmp_path / "actions") == [
        "actions/nix-job/action.yml: input 'run' has no description",
        "actions/nix-job/action.yml: uses ./actions/setup-flywheel, which does not exist",
        "actions/nix-job/action.yml: runs ../setup-flywheel/setup.sh, which is not an "
        "executable file",
    ]


def job(tmp_path: Path, variables: dict[str, str]) -> Job:
    runner = Runner(tmp_path / "home")
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    return Job(workspace, runner.env(variables, GITHUB_ACTIONS="true", RUNNER_TEMP=str(temp),
                                     GITHUB_WORKSPACE=str(workspace)))


def derivation(workspace: Path) -> str:
    salt = uuid.uuid4().hex
    (workspace / "default.nix").write_text(
        'derivation { name = "job-output"; system = builtins.currentSystem; '
        f'builder = "/bin/sh"; args = [ "-c" "echo {salt} > $out" ]; }}\n')
    return salt


def test_nix_job_pushes_what_it_builds(srv: FlywheelServer, tmp_path: Path) -> None:
    token = srv.mint("nix-job", "--push", CACHE)
    j = job(tmp_path, pool_variables(srv.url, CACHE, token, lookup_token=srv.admin_token))
    derivation(j.workspace)
    outputs = run_action(j, ACTIONS / "nix-job", {
        "run": "nix-build default.nix --no-out-link > built", "push": "true"}, tmp_path)
    assert not j.failed, j.output
    assert outputs == {"reachable": "true"}
    built = (j.workspace / "built").read_text().strip()
    assert "watch-store (pid " in j.output
    assert "pushed 1 (" in j.output       # flywheel runner finish: the watch-store summary
    narinfo = httpx.get(f"{srv.url}/{CACHE}/{Path(built).name[:32]}.narinfo",
                        headers={"Authorization": f"Bearer {srv.admin_token}"})
    assert narinfo.status_code == 200
    assert f"StorePath: {built}" in narinfo.text


def test_nix_job_without_a_reachable_cache_stays_green(srv: FlywheelServer,
                                                       tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    variables = {k: v.replace(srv.url, dead) for k, v in pool_variables(
        srv.url, CACHE, srv.mint("t", "--push", CACHE), lookup_token=srv.admin_token).items()}
    j = job(tmp_path, variables)
    derivation(j.workspace)
    outputs = run_action(j, ACTIONS / "nix-job", {
        "run": "nix-build default.nix --no-out-link", "push": "true"}, tmp_path)
    assert not j.failed, j.output
    assert outputs == {"reachable": "false"}
    assert f"::warning::cannot reach the cache server at {dead}" in j.output
    assert "::warning::watch-store" not in j.output    # not even tried
    assert "no watch-store was running" in j.output
    assert j.env["NIX_CONFIG"] == ""


def test_a_failing_command_fails_the_job_but_still_flushes(srv: FlywheelServer,
                                                           tmp_path: Path) -> None:
    token = srv.mint("nix-job", "--push", CACHE)
    j = job(tmp_path, pool_variables(srv.url, CACHE, token, lookup_token=srv.admin_token))
    run_action(j, ACTIONS / "nix-job", {"run": "false", "push": "true"}, tmp_path)
    assert j.failed
    failed_at = j.output.index("[step failed with exit code 1]")
    flushed_at = j.output.index('$ "$GITHUB_ACTION_PATH/../setup-flywheel/finish.sh"\npushed 0 (')
    assert failed_at < flushed_at       # if: always() ran the flush after the failure


@pytest.mark.skipif(not Bazel.available(), reason="bazel-bootstrap not installed")
def test_bazel_job_uses_the_remote_cache(srv: FlywheelServer, tmp_path: Path) -> None:
    token = srv.mint("bazel-job", "--push", CACHE)
    j = job(tmp_path, pool_variables(srv.url, CACHE, token, lookup_token=srv.admin_token))
    runner = Runner(tmp_path / "home")
    workspace = runner.workspace()
    try:
        outputs = run_action(j, ACTIONS / "bazel-job", {
            "run": f"bazel --output_user_root={tmp_path / 'bazel-root'} --max_idle_secs=60 "
                   "build //...",
            "working-directory": str(workspace)}, tmp_path)
        assert not j.failed, j.output
        assert outputs == {"reachable": "true", "can-push": "true"}
        status = httpx.get(f"{srv.url}/status",
                           headers={"Authorization": f"Bearer {srv.admin_token}"}).json()
        assert status["caches"][CACHE]["bazel"]["ac_entries"] > 0
    finally:
        runner.bazel(j.env, f"--output_user_root={tmp_path / 'bazel-root'}", "shutdown")

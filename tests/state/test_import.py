"""`flywheel state import --from-gitlab` against a local GitLab that answers as GitLab's
Terraform state API is documented to: the state and its older versions are copied with
their serial and lineage, on the data directory and through a server."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.gitlab import FakeGitLab, serve_gitlab
from tests.state.conftest import Caller, state_body, token_for
from tests.support.server import FLYWHEEL, FlywheelServer, clean_env, run_cli

TOKEN = "glpat-test-token"


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    with serve_gitlab(TOKEN) as fake:
        # GitLab numbers versions by serial; serial 2 was never written.
        for serial in (1, 3, 4):
            fake.add("42", "prod", serial, state_body(serial, lineage="gl-lineage", s=str(serial)))
        fake.add("ops/platform", "network", 7, state_body(7, lineage="net"))
        yield fake


def import_args(gitlab: FakeGitLab, workspace: str, *extra: str) -> list[str]:
    return ["state", "import", workspace, "--from-gitlab", gitlab.url, "--project", "42",
            "--name", "prod", "--token-env", "GITLAB_TOKEN", *extra]


def test_import_copies_the_state_and_its_history(server: FlywheelServer,
                                                 gitlab: FakeGitLab) -> None:
    done = run_cli(server.data_dir, *import_args(gitlab, "prod-imported"),
                   env={"GITLAB_TOKEN": TOKEN})
    assert "Imported 3 versions" in done.stdout
    assert "/api/v4/projects/42/terraform/state/prod/versions/2" in gitlab.requests
    history = json.loads(server.cli("state", "history", "prod-imported", "--json").stdout)
    assert [(v["serial"], v["lineage"]) for v in history] == [
        (4, "gl-lineage"), (3, "gl-lineage"), (1, "gl-lineage")]
    assert history[0]["note"] == "imported from GitLab (42, state prod)"
    shown = server.cli("state", "show", "prod-imported").stdout
    assert json.loads(shown) == json.loads(state_body(4, lineage="gl-lineage", s="4"))
    # Importing again: nothing lower is accepted over the current serial.
    again = run_cli(server.data_dir, *import_args(gitlab, "prod-imported"), check=False,
                    env={"GITLAB_TOKEN": TOKEN})
    assert again.returncode == 1 and "lower than the serial" in again.stderr


def test_import_by_project_path_through_the_server(server: FlywheelServer,
                                                   gitlab: FakeGitLab, tmp_path: Path) -> None:
    token = token_for(server, "migrator", **{"prod-*": "rwl"})
    home = tmp_path / "home"
    env = {"XDG_CONFIG_HOME": str(home), "GITLAB_TOKEN": TOKEN}
    subprocess.run([FLYWHEEL, "login", "here", server.url, token], env=clean_env(env),
                   check=True, capture_output=True)
    args = ["state", "import", "prod-net", "--from-gitlab", gitlab.url, "--project",
            "ops/platform", "--name", "network", "--token-env", "GITLAB_TOKEN", "--history",
            "2", "--server", "here"]
    run_cli(server.data_dir, *args, env=env)
    assert "/api/v4/projects/ops%2Fplatform/terraform/state/network" in gitlab.requests
    got = Caller(server.url, token).request("GET", "/_state/prod-net")
    assert got.content == state_body(7, lineage="net")


def test_import_refuses_a_wrong_token_and_a_missing_state(server: FlywheelServer,
                                                          gitlab: FakeGitLab) -> None:
    bad = run_cli(server.data_dir, *import_args(gitlab, "prod-x"), check=False,
                  env={"GITLAB_TOKEN": "wrong"})
    assert bad.returncode == 1 and "GitLab refused the token" in bad.stderr
    unset = run_cli(server.data_dir, *import_args(gitlab, "prod-x"), check=False)
    assert unset.returncode == 2 and "$GITLAB_TOKEN is not set" in unset.stderr
    args = import_args(gitlab, "prod-x")
    args[args.index("prod")] = "nothing"
    missing = run_cli(server.data_dir, *args, check=False, env={"GITLAB_TOKEN": TOKEN})
    assert missing.returncode == 1 and "GitLab has no Terraform state 'nothing'" in \
        missing.stderr
    assert server.cli("state", "history", "prod-x", check=False).returncode == 1

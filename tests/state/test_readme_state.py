"""The README's State walkthrough, run as written in one shell: its main.tf from the README,
a real server and a real Terraform, the GitLab of the import replaced by the local fake
(only addresses are this machine's)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.fakes.gitlab import serve_gitlab
from tests.state.conftest import state_body
from tests.support.server import FlywheelServer

REPO = Path(__file__).parents[2]
BLOCK = re.compile(r"^```(\w+)(?: (\S+))?\n(.*?)^```$", re.M | re.S)


def state_section() -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index("\n## State\n")
    return readme[start:readme.index("\n## ", start + 1)]


def test_the_state_walkthrough_runs_as_written(tmp_path: Path) -> None:
    blocks = BLOCK.findall(state_section())
    hcl = next(body for lang, name, body in blocks if lang == "hcl" and name == "main.tf")
    script = next(body for lang, _name, body in blocks if lang == "sh")
    # The backend block, exactly.
    assert 'username       = "flywheel"' in hcl and "/_state/prod-network/lock" in hcl
    server = FlywheelServer(tmp_path / "flywheel-data")
    shown = "127.0.0.1:8080"
    actual = f"127.0.0.1:{server.port}"
    (tmp_path / "main.tf").write_text(hcl.replace(shown, actual))
    with serve_gitlab("glpat-walkthrough") as gitlab:
        gitlab.add("42", "production", 3, state_body(3, lineage="from-gitlab"))
        (tmp_path / "gitlab.token").write_text("glpat-walkthrough")
        script = script.replace(shown, actual).replace("https://gitlab.example.com",
                                                       gitlab.url)
        home = tmp_path / "home"
        venv = str(Path(sys.executable).parent)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYWHEEL_", "TF_"))}
        env.update(PATH=f"{venv}{os.pathsep}{env.get('PATH', '')}", HOME=str(home),
                   XDG_CONFIG_HOME=str(home / "config"), CHECKPOINT_DISABLE="1",
                   TF_IN_AUTOMATION="1", TF_DATA_DIR=str(tmp_path / ".terraform"),
                   TF_CLI_CONFIG_FILE=str(home / "none.tfrc"), COLUMNS="200")
        server.start()
        try:
            run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                                 env=env, capture_output=True, text=True, timeout=600)
        finally:
            server.stop()
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert '"greeting"' in run.stdout and "prod-network" in run.stdout
    assert "Rolled workspace 'prod-network' back to version 1: now version 2" in run.stdout
    assert "Imported 1 version of GitLab state 'production' into workspace 'prod-legacy'" \
        in run.stdout
    history = json.loads(run.stdout[run.stdout.rindex("\n["):])
    assert [(v["serial"], v["lineage"]) for v in history] == [(3, "from-gitlab")]

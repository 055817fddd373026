"""The README's fleet walkthrough, run as written: every shell command in the `## Fleet`
section, in order, in one shell (only the ports and the CRD directory are this machine's),
its files written from the README's own blocks, its shown output found in what the
commands print, and then the workflow it shows run on a runner made from what apply put
in the cluster."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.fakes.kube.process import FakeCluster
from tests.fleet.actionrunner import Job, run_job
from tests.fleet.conftest import REPO
from tests.fleet.runnerenv import Runner
from tests.support.server import free_port

BLOCK = re.compile(r"^```(\w+)(?: (\S+))?\n(.*?)^```$", re.M | re.S)
CRDS_PLACEHOLDER = "/path/to/gha-runner-scale-set-controller/crds"


@dataclass
class Walkthrough:
    script: str = ""
    expected: list[str] = field(default_factory=list)
    workflow: dict[str, Any] | None = None


def fleet_section() -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index("\n## Fleet\n")
    return readme[start:readme.index("\n## ", start + 1)]


def walkthrough(ports: dict[str, str], crds: Path) -> Walkthrough:
    found = Walkthrough()

    def local(text: str) -> str:
        for shown, actual in ports.items():
            text = text.replace(shown, actual)
        return text.replace(CRDS_PLACEHOLDER, str(crds))

    for language, name, body in BLOCK.findall(fleet_section()):
        if language == "sh":
            found.script += local(body)
        elif language == "text":
            found.expected += local(body).splitlines()
        elif language == "yaml" and name.startswith(".github/workflows/"):
            found.workflow = yaml.safe_load(local(body))
        elif language == "yaml" and name:
            found.script += f"cat > {name} <<'README_EOF'\n{local(body)}README_EOF\n"
    return found


@pytest.fixture
def ports() -> dict[str, str]:
    return {f"127.0.0.1:{shown}": f"127.0.0.1:{free_port()}" for shown in (8080, 9092, 6443)}


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """Where the walkthrough runs, and its environment: the venv's programs first, this
    repository importable (for the fake API server), a home of its own."""
    venv = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLYWHEEL_", "KUBECONFIG", "ARC_CRDS"))}
    env.update(PATH=f"{venv}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(REPO),
               HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "home" / "config"),
               COLUMNS="200")
    workdir = tmp_path / "demo"
    workdir.mkdir()
    yield workdir, env


def test_the_fleet_walkthrough(shell: tuple[Path, dict[str, str]], ports: dict[str, str],
                               arc_crds: Path, tmp_path: Path) -> None:
    workdir, env = shell
    steps = walkthrough(ports, arc_crds)
    assert "flywheel fleet enroll" in steps.script and steps.workflow is not None
    (workdir / "walkthrough.sh").write_text(steps.script)
    log = tmp_path / "walkthrough.log"
    with log.open("w") as out:
        proc = subprocess.Popen(["bash", "-euo", "pipefail", "walkthrough.sh"], cwd=workdir,
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        code = proc.wait(timeout=240)
        printed = log.read_text()
        assert code == 0, printed
        lines = printed.splitlines()
        for line in steps.expected:
            assert line in lines, f"the README shows {line!r}, the commands printed:\n{printed}"
        run_the_workflow(steps.workflow, workdir, ports, tmp_path)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)     # the server and fake cluster it started


def run_the_workflow(workflow: dict[str, Any], workdir: Path, ports: dict[str, str],
                     tmp_path: Path) -> None:
    """The job, on a runner as the applied scale set describes it."""
    build = workflow["jobs"]["build"]
    cluster = FakeCluster(workdir, None)      # the one the walkthrough started
    ars = cluster.get("actions.github.com/v1alpha1", "AutoscalingRunnerSet", build["runs-on"],
                      "arc-runners")
    cluster.stop()
    assert ars is not None
    container = ars["spec"]["template"]["spec"]["containers"][0]
    token = (workdir / "ci-token").read_text().strip()
    variables = {v["name"]: v.get("value", token) for v in container["env"]}
    assert container["env"][3]["valueFrom"]["secretKeyRef"]["name"] == "flywheel-ci"

    runner = Runner(tmp_path / "runner")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "default.nix").write_text(
        'derivation { name = "readme-job"; system = builtins.currentSystem; '
        f'builder = "/bin/sh"; args = [ "-c" "echo {os.getpid()} {tmp_path.name} > $out" ]; }}\n')
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    job = Job(repo, runner.env(variables, GITHUB_ACTIONS="true", RUNNER_TEMP=str(temp),
                               GITHUB_WORKSPACE=str(repo)))
    run_job(job, build["steps"], tmp_path)
    assert not job.failed, job.output
    url = f"http://{ports['127.0.0.1:8080']}"
    assert f"Nix substitutes from {url}/ci" in job.output
    built = (repo / "result").resolve()
    narinfo = httpx.get(f"{url}/ci/{built.name[:32]}.narinfo")
    assert narinfo.status_code == 200, job.output

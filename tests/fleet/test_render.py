"""`flywheel fleet render`: the golden render of the complete example, every object valid
against the ARC CRDs and the Kubernetes schemas, and nothing written when anything is wrong."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from flywheel.fleet.crds import from_directory
from flywheel.fleet.validate import Validator
from tests.fleet.clihelp import Result, flywheel
from tests.fleet.conftest import DATA, EXAMPLE
from tests.support.server import FLYWHEEL, clean_env

GOLDEN = DATA / "golden"


def render(spec: Path, out: Path, crds: Path, *extra: str, check: bool = True) -> Result:
    result = flywheel("fleet", "render", str(spec), "--out", str(out), "--crds", str(crds),
                      *extra)
    if check:
        assert result.code == 0, result.err
    return result


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_golden_render_of_the_complete_example(tmp_path: Path, arc_crds: Path) -> None:
    render(EXAMPLE, tmp_path / "out", arc_crds)
    rendered = tree(tmp_path / "out")
    if os.environ.get("FLEET_UPDATE_GOLDEN"):
        shutil.rmtree(GOLDEN, ignore_errors=True)
        shutil.copytree(tmp_path / "out", GOLDEN)
    assert rendered == tree(GOLDEN)
    assert len(rendered) == 24
    render(EXAMPLE, tmp_path / "again", arc_crds)
    assert tree(tmp_path / "again") == rendered   # byte-identical for the same input


def test_every_rendered_object_is_valid(arc_crds: Path) -> None:
    validator = Validator(from_directory(arc_crds), "1.31")
    objects = [yaml.safe_load(p.read_text()) for p in sorted(GOLDEN.rglob("*.yaml"))]
    kinds = {o["kind"] for o in objects}
    assert kinds == {"Namespace", "ServiceAccount", "Role", "RoleBinding",
                     "AutoscalingRunnerSet"}
    for obj in objects:
        assert validator.problems(obj) == [], obj["metadata"]["name"]


def test_the_validator_refuses_unknown_fields_and_bad_values(arc_crds: Path) -> None:
    validator = Validator(from_directory(arc_crds), "1.31")
    ars = yaml.safe_load((GOLDEN / "arc-runners" / "autoscalingrunnerset-nix.yaml").read_text())
    ars["spec"]["minRunnerz"] = 1
    ars["spec"]["maxRunners"] = "many"
    ars["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    assert validator.problems(ars) == [
        "AutoscalingRunnerSet arc-runners/nix: spec: Additional properties are not allowed "
        "('minRunnerz' was unexpected)",
        "AutoscalingRunnerSet arc-runners/nix: spec.maxRunners: 'many' is not of type 'integer'",
        "AutoscalingRunnerSet arc-runners/nix: spec.template.spec.containers[0].imagePullPolicy:"
        " 3 is not of type 'string'",    # the CRD says so...
        "AutoscalingRunnerSet arc-runners/nix: spec.template.spec.containers[0].imagePullPolicy:"
        " 3 is not of type 'string', 'null'",    # ...and so does PodTemplateSpec
    ]
    role = yaml.safe_load((GOLDEN / "arc-runners" / "role-nix-gha-rs-manager.yaml").read_text())
    role["rules"][0]["verbz"] = ["get"]
    assert validator.problems(role) == [
        "Role arc-runners/nix-gha-rs-manager: rules[0]: Additional properties are not allowed "
        "('verbz' was unexpected)"]


def test_the_cache_wiring_of_a_pool(tmp_path: Path) -> None:
    ars = yaml.safe_load((GOLDEN / "arc-runners" / "autoscalingrunnerset-nix.yaml").read_text())
    env = {e["name"]: e.get("value", e.get("valueFrom"))
           for e in ars["spec"]["template"]["spec"]["containers"][0]["env"]}
    url = "http://flywheel.flywheel-system.svc:8080"
    key = "flywheel-main-1:2sYHZxWZzq3PjfVqG0nJnDWdMxH5pN5C6bXq5hl4Y1g="
    assert env == {
        "FLYWHEEL_URL": url, "FLYWHEEL_CACHE": "main", "FLYWHEEL_BAZEL_CACHE": "main",
        "FLYWHEEL_TOKEN": {"secretKeyRef": {"name": "flywheel-ci", "key": "token"}},
        "ATTIC_SERVER": url, "ATTIC_CACHE": "main", "BAZEL_REMOTE_CACHE": f"{url}/main",
        "NIX_CONFIG": f"extra-substituters = {url}/main\nextra-trusted-public-keys = {key}\n",
    }
    # The enrollment inherits the pool's wiring, not a copy that could drift.
    enrolled = yaml.safe_load(
        (GOLDEN / "arc-runners" / "autoscalingrunnerset-nix-acme-labs.yaml").read_text())
    assert enrolled["spec"]["template"]["spec"]["containers"] == \
        ars["spec"]["template"]["spec"]["containers"]
    assert enrolled["spec"]["githubConfigUrl"] == "https://github.com/acme-labs"
    assert enrolled["spec"]["githubConfigSecret"] == "github-app-acme-labs"
    assert enrolled["spec"]["runnerScaleSetName"] == "nix"   # the same runs-on label
    docker = yaml.safe_load((GOLDEN / "arc-docker" / "autoscalingrunnerset-docker.yaml"
                             ).read_text())
    names = [e["name"] for e in docker["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert "NIX_CONFIG" not in names and "BAZEL_REMOTE_CACHE" in names


def test_schedules_set_min_runners_at_a_given_time(tmp_path: Path, arc_crds: Path) -> None:
    def min_runners(at: str) -> int:
        out = tmp_path / at.replace(":", "")
        render(EXAMPLE, out, arc_crds, "--at", at)
        ars = yaml.safe_load((out / "arc-runners" / "autoscalingrunnerset-nix.yaml").read_text())
        return int(ars["spec"]["minRunners"])

    assert min_runners("2025-03-03T09:00:00+01:00") == 4     # Monday, working hours in Berlin
    assert min_runners("2025-03-03T06:45:00+00:00") == 4     # 07:45 in Berlin
    assert min_runners("2025-03-03T19:30:00+01:00") == 1     # evening: the pool's own
    assert min_runners("2025-03-08T10:00:00+01:00") == 1     # Saturday


def test_an_invalid_object_fails_the_render_and_writes_nothing(tmp_path: Path,
                                                               arc_crds: Path) -> None:
    spec = tmp_path / "fleet.yaml"
    spec.write_text(EXAMPLE.read_text().replace("effect: NoSchedule",
                                                "effect: NoSchedule\n        seconds: 30"))
    proc = render(spec, tmp_path / "out", arc_crds, check=False)
    assert proc.code == 2
    assert "AutoscalingRunnerSet arc-runners/nix: spec.template.spec.tolerations[0]: " \
        "Additional properties are not allowed ('seconds' was unexpected)" in proc.err
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["fleet.yaml"]


def test_render_replaces_its_own_output_and_refuses_foreign_directories(
        tmp_path: Path, arc_crds: Path) -> None:
    out = tmp_path / "out"
    render(EXAMPLE, out, arc_crds)
    smaller = tmp_path / "fleet.yaml"
    smaller.write_text(EXAMPLE.read_text().split("enrollments:")[0])
    render(smaller, out, arc_crds)
    assert not (out / "arc-runners" / "autoscalingrunnerset-nix-acme-labs.yaml").exists()
    assert len(tree(out)) == 16
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    proc = render(EXAMPLE, foreign, arc_crds, check=False)
    assert proc.code == 2
    assert "holds files render did not write" in proc.err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("crds", ["", "missing"])
def test_render_needs_the_crds(tmp_path: Path, crds: str) -> None:
    args = ["--crds", str(tmp_path / crds)] if crds else []
    proc = subprocess.run([FLYWHEEL, "fleet", "render", str(EXAMPLE), "--out",
                           str(tmp_path / "out"), *args], capture_output=True, text=True,
                          env={k: v for k, v in clean_env().items() if k != "ARC_CRDS"},
                          timeout=60)
    assert proc.returncode == 2
    assert "CRD" in proc.stderr
    assert not (tmp_path / "out").exists()

"""`flywheel fleet enroll` / `offboard`: edits that keep the file as it was written, refuse
colliding scale sets, print the outside steps and check the Secret in the cluster."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.kube.process import FakeCluster
from tests.fleet.clihelp import flywheel
from tests.fleet.conftest import EXAMPLE


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(EXAMPLE.read_text())
    return path


@pytest.fixture
def cluster(tmp_path: Path, arc_crds: Path) -> Iterator[FakeCluster]:
    with FakeCluster(tmp_path, arc_crds) as c:
        yield c


def secret(cluster: FakeCluster, name: str, **data: str) -> None:
    cluster.create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": name, "namespace": "arc-runners"},
                    "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})


def test_enroll_appends_one_entry_and_keeps_the_rest_of_the_file(spec: Path,
                                                                   cluster: FakeCluster) -> None:
    before = spec.read_text()
    result = flywheel("fleet", "enroll", "--org", "newco", "--pool", "nix",
                      "--installation-id", "555", "-f", str(spec),
                      "--kubeconfig", str(cluster.kubeconfig))
    assert result.code == 0, result.err
    assert spec.read_text() == before + "  - org: newco\n    pool: nix\n    installationId: 555\n"
    assert result.out.splitlines() == [
        f"Enrolled https://github.com/newco in pool nix: scale set arc-runners/nix-newco "
        f"(runs-on: nix), in {spec}",
        "1. Install the GitHub App on newco (for a repository: on its owner, with access to "
        "it): https://github.com/organizations/newco/settings/installations; the installation "
        "id ends the URL of the installation's settings page",
        "2. Create the Secret ARC reads the App from:",
        "  kubectl create secret generic github-app-newco --namespace arc-runners "
        "--from-literal=github_app_id=123456 --from-literal=github_app_installation_id=555 "
        "--from-file=github_app_private_key=PRIVATE_KEY.pem",
        f"3. Then: flywheel fleet plan {spec} and flywheel fleet apply {spec}",
        "check: Secret arc-runners/github-app-newco does not exist yet: create it as above",
    ]
    plan = flywheel("fleet", "plan", str(spec), "--kubeconfig", str(cluster.kubeconfig))
    assert "AutoscalingRunnerSet arc-runners/nix-newco: create" in plan.out


def test_the_secret_check(spec: Path, cluster: FakeCluster) -> None:
    cluster.create({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": "arc-runners"}})
    secret(cluster, "github-app-ready", github_app_id="123456",
           github_app_installation_id="77", github_app_private_key="-----BEGIN...")
    secret(cluster, "github-app-partial", github_app_id="123456")
    secret(cluster, "github-app-other", github_app_id="123456",
           github_app_installation_id="1", github_app_private_key="k")

    def check(org: str, *extra: str) -> str:
        result = flywheel("fleet", "enroll", "--org", org, "--pool", "nix", *extra,
                          "-f", str(spec), "--kubeconfig", str(cluster.kubeconfig))
        assert result.code == 0, result.err
        return result.out.splitlines()[-1]

    assert check("ready", "--installation-id", "77") == \
        "check: Secret arc-runners/github-app-ready is ready (github_app_id, " \
        "github_app_installation_id, github_app_private_key)"
    assert check("partial") == "check: Secret arc-runners/github-app-partial lacks " \
                               "github_app_installation_id, github_app_private_key"
    assert check("other", "--installation-id", "2") == \
        "check: Secret arc-runners/github-app-other holds installation id 1, not 2"


def test_colliding_or_invalid_enrollments_are_refused_and_nothing_is_written(
        spec: Path) -> None:
    before = spec.read_text()
    again = flywheel("fleet", "enroll", "--org", "acme-labs", "--pool", "nix", "-f", str(spec))
    assert again.code == 1
    assert "acme-labs is already enrolled in pool 'nix'" in again.err
    # acme/labs would be "nix-acme-labs" too, like the acme-labs org's scale set (ARC #3587).
    clash = flywheel("fleet", "enroll", "--repo", "acme/labs", "--pool", "nix", "-f", str(spec))
    assert clash.code == 1
    assert "the change would make the spec invalid, so nothing was written:" in clash.err
    assert f"{spec}:76: enrollments[2].name: scale set 'nix-acme-labs' in namespace " \
           "'arc-runners' is already made by enrollments[0]; give this one another name" \
        in clash.err
    bad = flywheel("fleet", "enroll", "--org", "no spaces", "--pool", "nix", "-f", str(spec))
    assert bad.code == 1 and "enrollments[2].org" in bad.err
    unknown = flywheel("fleet", "enroll", "--org", "x", "--pool", "gpu", "-f", str(spec))
    assert unknown.code == 1 and "no pool named 'gpu'" in unknown.err
    assert spec.read_text() == before
    named = flywheel("fleet", "enroll", "--repo", "acme/labs", "--pool", "nix", "--name",
                     "nix-acme-labs-repo", "-f", str(spec))
    assert named.code == 0, named.err
    assert spec.read_text().endswith("  - repo: acme/labs\n    pool: nix\n"
                                     "    name: nix-acme-labs-repo\n")


def test_offboard(spec: Path) -> None:
    before = spec.read_text()
    result = flywheel("fleet", "offboard", "--repo", "friends/tools", "-f", str(spec))
    assert result.code == 0, result.err
    assert spec.read_text() == before.replace("  - repo: friends/tools\n    pool: dind\n", "")
    assert result.out.splitlines() == [
        f"Removed the enrollment of https://github.com/friends/tools in pool dind from {spec}",
        f"1. Then: flywheel fleet apply {spec} --prune deletes scale set "
        "arc-runners/dind-friends-tools (the plan shows it first)",
        "2. Nothing else uses Secret arc-runners/github-app-friends now:",
        "  kubectl delete secret github-app-friends --namespace arc-runners",
    ]
    missing = flywheel("fleet", "offboard", "--org", "nobody", "-f", str(spec))
    assert missing.code == 1 and "nobody is not enrolled" in missing.err
    assert flywheel("fleet", "enroll", "--org", "acme-labs", "--pool", "dind",
                    "-f", str(spec)).code == 0
    ambiguous = flywheel("fleet", "offboard", "--org", "acme-labs", "-f", str(spec))
    assert ambiguous.code == 1
    assert "acme-labs is enrolled in pools nix, dind: say which with --pool" in ambiguous.err
    shared = flywheel("fleet", "offboard", "--org", "acme-labs", "--pool", "dind",
                      "-f", str(spec))
    assert shared.code == 0
    assert "kubectl delete secret" not in shared.out     # the nix enrollment still uses it

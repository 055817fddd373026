"""plan / apply / prune / reconcile against the fake API server, through a generated
kubeconfig, exactly as against a cluster."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fakes.kube.process import FakeCluster
from tests.fleet.clihelp import flywheel
from tests.fleet.conftest import EXAMPLE
from tests.support.server import FLYWHEEL, clean_env

ARS = ("actions.github.com/v1alpha1", "AutoscalingRunnerSet")
RBAC = "rbac.authorization.k8s.io/v1"
MONDAY_MORNING = "2025-03-03T09:00:00+01:00"
MONDAY_NIGHT = "2025-03-03T22:00:00+01:00"


@pytest.fixture
def cluster(tmp_path: Path, arc_crds: Path) -> Iterator[FakeCluster]:
    with FakeCluster(tmp_path, arc_crds) as c:
        yield c


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(EXAMPLE.read_text())
    return path


def kube(cluster: FakeCluster, *args: str) -> list[str]:
    return [*args, "--kubeconfig", str(cluster.kubeconfig)]


def test_plan_apply_is_idempotent_and_shows_changed_fields(cluster: FakeCluster,
                                                            spec: Path) -> None:
    plan = flywheel(*kube(cluster, "fleet", "plan", str(spec), "--at", MONDAY_NIGHT))
    assert plan.code == 0, plan.err
    assert "AutoscalingRunnerSet arc-runners/nix: create" in plan.out
    assert "Namespace arc-docker: create" in plan.out
    assert plan.out.strip().endswith("Plan: 24 to create, 0 to change, 0 to delete, "
                                     "0 unchanged")
    assert cluster.get(*ARS, "nix", "arc-runners") is None     # a plan changes nothing

    first = flywheel(*kube(cluster, "fleet", "apply", str(spec), "--at", MONDAY_NIGHT))
    assert first.code == 0, first.err
    assert "Applied: 24 created, 0 changed, 0 unchanged, 0 deleted" in first.out
    live = cluster.get(*ARS, "nix", "arc-runners")
    assert live is not None
    assert live["spec"]["maxRunners"] == 20 and live["spec"]["minRunners"] == 1
    owners = {m["manager"]: m["fieldsV1"] for m in live["metadata"]["managedFields"]}
    assert set(owners) == {"gloriousflywheel-fleet", "gloriousflywheel-schedule"}
    assert owners["gloriousflywheel-schedule"] == {"f:spec": {"f:minRunners": {}}}
    assert "f:minRunners" not in owners["gloriousflywheel-fleet"]["f:spec"]
    assert live["metadata"]["labels"]["gloriousflywheel.dev/fleet"] == "acme"
    version = live["metadata"]["resourceVersion"]

    again = flywheel(*kube(cluster, "fleet", "apply", str(spec), "--at", MONDAY_NIGHT))
    assert again.code == 0, again.err
    assert f"No changes: the cluster matches {spec} (24 objects unchanged)" in again.out
    assert cluster.get(*ARS, "nix", "arc-runners")["metadata"]["resourceVersion"] == version  # type: ignore[index]

    spec.write_text(spec.read_text().replace("maxRunners: 20", "maxRunners: 30")
                    .replace("ghcr.io/acme/nix-runner:2025.1", "ghcr.io/acme/nix-runner:2025.2"))
    changed = flywheel(*kube(cluster, "fleet", "plan", str(spec), "--at", MONDAY_NIGHT))
    assert changed.code == 0, changed.err
    lines = changed.out.splitlines()
    at = lines.index("AutoscalingRunnerSet arc-runners/nix: change")
    block = lines[at + 1:at + 4]
    assert "  spec.maxRunners: 20 → 30" in block
    assert "  spec.template.spec.containers[runner].image: ghcr.io/acme/nix-runner:2025.1 → " \
           "ghcr.io/acme/nix-runner:2025.2" in block
    assert any(x.startswith("  metadata.annotations.actions.github.com/values-hash: ")
               for x in block)
    assert "AutoscalingRunnerSet arc-runners/nix-acme-labs: change" in lines   # inherited
    assert "Plan: 0 to create, 2 to change, 0 to delete, 22 unchanged" in changed.out
    applied = flywheel(*kube(cluster, "fleet", "apply", str(spec), "--at", MONDAY_NIGHT))
    assert "Applied: 0 created, 2 changed, 22 unchanged, 0 deleted" in applied.out
    assert cluster.get(*ARS, "nix", "arc-runners")["spec"]["maxRunners"] == 30  # type: ignore[index]


def test_conflicts_are_shown_and_nothing_is_applied_without_force(cluster: FakeCluster,
                                                                   spec: Path) -> None:
    assert flywheel(*kube(cluster, "fleet", "apply", str(spec))).code == 0
    cluster.patch(*ARS, "dind", "arc-runners", {"spec": {"maxRunners": 7}})  # kubectl edit
    spec.write_text(spec.read_text().replace("    maxRunners: 5\n", "    maxRunners: 6\n"))
    refused = flywheel(*kube(cluster, "fleet", "apply", str(spec)))
    assert refused.code == 1
    assert "AutoscalingRunnerSet arc-runners/dind: conflict" in refused.out
    assert 'Apply failed with 1 conflict: conflict with "kubectl-edit" using ' \
           "actions.github.com/v1alpha1: .spec.maxRunners" in refused.out
    assert "nothing was applied (--force-conflicts takes them over)" in refused.err
    docker = cluster.get(*ARS, "docker", "arc-docker")
    assert docker is not None and docker["spec"]["maxRunners"] == 5    # untouched
    assert cluster.get(*ARS, "dind", "arc-runners")["spec"]["maxRunners"] == 7  # type: ignore[index]

    forced = flywheel(*kube(cluster, "fleet", "apply", str(spec), "--force-conflicts"))
    assert forced.code == 0, forced.err
    dind = cluster.get(*ARS, "dind", "arc-runners")
    assert dind is not None and dind["spec"]["maxRunners"] == 3
    assert cluster.get(*ARS, "docker", "arc-docker")["spec"]["maxRunners"] == 6  # type: ignore[index]
    assert "kubectl-edit" not in str(dind["metadata"]["managedFields"])


def test_prune_removes_only_what_this_fleet_made(cluster: FakeCluster, spec: Path) -> None:
    assert flywheel(*kube(cluster, "fleet", "apply", str(spec))).code == 0
    # Objects of someone else, and of another fleet, in the same namespace.
    for labels in ({}, {"gloriousflywheel.dev/fleet": "other"}):
        name = f"foreign-{len(labels)}"
        cluster.create({"apiVersion": RBAC, "kind": "Role",
                        "metadata": {"name": name, "namespace": "arc-runners",
                                     "labels": labels}, "rules": []})
    spec.write_text(spec.read_text().split("enrollments:")[0])

    kept = flywheel(*kube(cluster, "fleet", "apply", str(spec)))
    assert kept.code == 0, kept.err
    assert "AutoscalingRunnerSet arc-runners/nix-acme-labs: delete" in kept.out
    assert "8 objects are no longer in the spec and were kept; apply --prune deletes them" \
        in kept.out
    assert cluster.get(*ARS, "nix-acme-labs", "arc-runners") is not None

    pruned = flywheel(*kube(cluster, "fleet", "apply", str(spec), "--prune"))
    assert pruned.code == 0, pruned.err
    assert "deleted AutoscalingRunnerSet arc-runners/nix-acme-labs\n" in pruned.out
    assert "deleted Role arc-runners/nix-acme-labs-gha-rs-manager (waiting for finalizers: " \
           "actions.github.com/cleanup-protection)" in pruned.out
    assert "Applied: 0 created, 0 changed, 16 unchanged, 8 deleted" in pruned.out
    assert cluster.get(*ARS, "nix-acme-labs", "arc-runners") is None
    assert cluster.get(*ARS, "dind-friends-tools", "arc-runners") is None
    role = cluster.get(RBAC, "Role", "nix-acme-labs-gha-rs-manager", "arc-runners")
    assert role is not None and role["metadata"]["deletionTimestamp"]
    for name in ("foreign-0", "foreign-1"):
        assert cluster.get(RBAC, "Role", name, "arc-runners") is not None
    assert cluster.get(*ARS, "nix", "arc-runners") is not None

    # The controller removes its finalizer once the scale set is gone; then it is deleted.
    cluster.patch(RBAC, "Role", "nix-acme-labs-gha-rs-manager", "arc-runners",
                  {"metadata": {"finalizers": None}}, manager="arc-controller")
    assert cluster.get(RBAC, "Role", "nix-acme-labs-gha-rs-manager", "arc-runners") is None
    quiet = flywheel(*kube(cluster, "fleet", "plan", str(spec)))
    assert "0 to delete, 16 unchanged" in quiet.out, quiet.out

    one_namespace = spec.read_text().replace("namespace: arc-docker", "namespace: arc-runners")
    spec.write_text(one_namespace)
    moved = flywheel(*kube(cluster, "fleet", "apply", str(spec), "--prune"))
    assert moved.code == 0, moved.err
    assert "Namespace arc-docker: no longer used by this fleet; it is kept" in moved.out


def test_schedules_and_reconcile(cluster: FakeCluster, spec: Path) -> None:
    applied = flywheel(*kube(cluster, "fleet", "apply", str(spec), "--at", MONDAY_MORNING))
    assert applied.code == 0, applied.err
    assert cluster.get(*ARS, "nix", "arc-runners")["spec"]["minRunners"] == 4  # type: ignore[index]
    fleet_version = cluster.get(*ARS, "nix", "arc-runners")["metadata"]["managedFields"]  # type: ignore[index]

    night = flywheel(*kube(cluster, "fleet", "reconcile", str(spec), "--at", MONDAY_NIGHT))
    assert night.code == 0, night.err
    assert "arc-runners/nix: minRunners 4 → 1 (no schedule window open)" in night.out
    assert "arc-runners/nix-acme-labs: minRunners 4 → 1 (no schedule window open)" in night.out
    assert "arc-docker/docker: minRunners 0 (no schedule window open), unchanged" in night.out
    live = cluster.get(*ARS, "nix", "arc-runners")
    assert live is not None and live["spec"]["minRunners"] == 1
    assert live["spec"]["maxRunners"] == 20
    fleet_fields = [m for m in live["metadata"]["managedFields"]
                    if m["manager"] == "gloriousflywheel-fleet"]
    assert fleet_fields == [m for m in fleet_version if m["manager"] == "gloriousflywheel-fleet"]

    morning = flywheel(*kube(cluster, "fleet", "reconcile", str(spec), "--at", MONDAY_MORNING))
    assert "arc-runners/nix: minRunners 1 → 4 (schedule working-hours)" in morning.out
    again = flywheel(*kube(cluster, "fleet", "reconcile", str(spec), "--at", MONDAY_MORNING))
    assert "arc-runners/nix: minRunners 4 (schedule working-hours), unchanged" in again.out
    # A later apply at night agrees with reconcile: no fight over the field.
    plan = flywheel(*kube(cluster, "fleet", "plan", str(spec), "--at", MONDAY_NIGHT))
    assert "  spec.minRunners: 4 → 1" in plan.out


def test_reconcile_leaves_missing_scale_sets_alone(cluster: FakeCluster, spec: Path) -> None:
    result = flywheel(*kube(cluster, "fleet", "reconcile", str(spec), "--at", MONDAY_MORNING))
    assert result.code == 0, result.err
    assert "arc-runners/nix: not in the cluster yet (flywheel fleet apply creates it)" \
        in result.out
    assert cluster.get(*ARS, "nix", "arc-runners") is None


def test_a_cluster_without_arc_is_refused(tmp_path: Path, spec: Path) -> None:
    with FakeCluster(tmp_path, None) as bare:
        result = flywheel(*kube(bare, "fleet", "plan", str(spec)))
    assert result.code == 1
    assert "does not serve actions.github.com/v1alpha1 autoscalingrunnersets: install the " \
           "gha-runner-scale-set-controller chart (ARC) first" in result.err


def test_kubeconfig_from_the_environment_and_context(cluster: FakeCluster, spec: Path) -> None:
    env = {"KUBECONFIG": str(cluster.kubeconfig)}
    assert flywheel("fleet", "plan", str(spec), env=env).code == 0
    wrong = flywheel("fleet", "plan", str(spec), "--context", "elsewhere", env=env)
    assert wrong.code == 1
    assert "Context 'elsewhere' not found" in wrong.err
    assert flywheel("fleet", "plan", str(spec), "--context", "fake", env=env).code == 0


def row_of(table: str, scale_set: str) -> list[str]:
    for line in table.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells[:1] == [scale_set]:
            return cells
    raise AssertionError(f"no row for {scale_set}:\n{table}")


def test_status_names_stuck_runners(cluster: FakeCluster, spec: Path) -> None:
    assert flywheel(*kube(cluster, "fleet", "apply", str(spec), "--at", MONDAY_NIGHT)).code == 0
    ns, api = "arc-runners", "actions.github.com/v1alpha1"
    labels = {"actions.github.com/scale-set-name": "nix",
              "actions.github.com/scale-set-namespace": ns}
    # What ARC's controller would have made by now.
    cluster.patch(*ARS, "nix", ns, {"status": {"currentRunners": 4, "phase": "Running"}},
                  manager="arc-controller", status=True)
    cluster.create({"apiVersion": api, "kind": "EphemeralRunnerSet",
                    "metadata": {"name": "nix-7xk2p", "namespace": ns, "labels": labels},
                    "spec": {"replicas": 5, "patchID": 0}})
    runners = {"nix-7xk2p-running": ("Running", {}), "nix-7xk2p-ghost": ("Running", {}),
               "nix-7xk2p-failed": ("Failed", {"message": "Pod has failed to start more than "
                                               "5 times", "failures": {str(i): "2025-03-03T"
                                                                       f"0{i}:00:00Z"
                                                                       for i in range(5)}}),
               "nix-7xk2p-pull": ("Pending", {})}
    for name, (phase, extra) in runners.items():
        cluster.create({"apiVersion": api, "kind": "EphemeralRunner",
                        "metadata": {"name": name, "namespace": ns, "labels": labels},
                        "spec": {"githubConfigUrl": "https://github.com/acme",
                                 "githubConfigSecret": "github-app", "runnerScaleSetId": 1}})
        cluster.patch(api, "EphemeralRunner", name, ns, {"status": {"phase": phase, **extra}},
                      manager="arc-controller", status=True)
    for name, state in (("nix-7xk2p-running", {"running": {}}),
                        ("nix-7xk2p-pull", {"waiting": {
                            "reason": "ImagePullBackOff",
                            "message": 'Back-off pulling image "ghcr.io/acme/nix-runner:2025.1"'
                        }})):
        cluster.create({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": name, "namespace": ns},
                        "spec": {"containers": [{"name": "runner", "image": "x"}]}})
        cluster.patch("v1", "Pod", name, ns, {"status": {"containerStatuses": [
            {"name": "runner", "state": state, "ready": False, "restartCount": 0,
             "image": "x", "imageID": ""}]}}, manager="kubelet", status=True)

    later = (datetime.now(UTC) + timedelta(minutes=25)).isoformat()
    result = flywheel(*kube(cluster, "fleet", "status", str(spec), "--at", later))
    assert result.code == 0, result.err
    assert row_of(result.out, "nix") == ["nix", "arc-runners", "nix", "1", "20", "4", "5",
                     "1 Failed, 1 Pending, 2 Running", "min 1"]
    stuck = [line for line in result.out.splitlines() if line.startswith("stuck: ")]
    assert stuck == [
        "stuck: arc-runners/nix runner nix-7xk2p-failed (Failed): Pod has failed to start "
        "more than 5 times",
        "stuck: arc-runners/nix runner nix-7xk2p-ghost (Running): Running, but its pod is "
        "gone: the runner will never take a job (delete the EphemeralRunner)",
        "stuck: arc-runners/nix runner nix-7xk2p-pull (Pending): Pending for 25m: runner: "
        'ImagePullBackOff (Back-off pulling image "ghcr.io/acme/nix-runner:2025.1")',
    ]
    patient = flywheel(*kube(cluster, "fleet", "status", str(spec), "--at", later,
                             "--pending-threshold", "1h"))
    assert "nix-7xk2p-pull" not in patient.out

    spec.write_text(spec.read_text() + "  - org: newcomer\n    pool: nix\n")
    fresh = flywheel(*kube(cluster, "fleet", "status", str(spec), "--at", MONDAY_MORNING))
    assert row_of(fresh.out, "nix-newcomer")[-2:] == ["not applied", "working-hours: min 4"]
    assert row_of(fresh.out, "nix")[-1] == "working-hours: min 4 (reconcile will set it)"


def test_reconcile_watch_follows_until_told_to_stop(cluster: FakeCluster, spec: Path) -> None:
    assert flywheel(*kube(cluster, "fleet", "apply", str(spec), "--at", MONDAY_NIGHT)).code == 0
    proc = subprocess.Popen([FLYWHEEL, *kube(cluster, "fleet", "reconcile", str(spec),
                                             "--watch", "--at", MONDAY_MORNING)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env())
    try:
        deadline = time.monotonic() + 60
        while cluster.get(*ARS, "nix", "arc-runners")["spec"]["minRunners"] != 4:  # type: ignore[index]
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "arc-runners/nix: minRunners 1 → 4 (schedule working-hours)" in out

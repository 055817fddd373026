"""Fleet changes through the forge (a branch, a commit, a pull request whose description
holds the diff; its checks and merge state followed), and queue times from GitHub's
``workflow_job`` webhook, signed and stored per pool."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx

from flywheel.operator.webhooks import signature
from tests.fakes.github import schemas
from tests.fakes.github.instances import webhook
from tests.operator.conftest import ARC_API, NS, WEBHOOK_SECRET, Plane, apply_example


def test_pausing_a_pool_opens_a_pull_request_with_the_diff(plane: Plane) -> None:
    before = plane.github.file("main", "fleet.yaml")
    with plane.api("operator") as ops:
        opened = ops.post("/_api/v1/fleet/pools/docker/pause")
        assert opened.status_code == 201, opened.text
        change = opened.json()
        pull = plane.github.pulls[change["number"]]
        after = plane.github.file(pull.head, "fleet.yaml")
        assert plane.github.file("main", "fleet.yaml") == before   # only the branch changed
        assert "    maxRunners: 0  # flywheel-paused: {\"maxRunners\":5,\"minRunners\":0}" \
            in after
        assert change["diff"].count("\n-") == 1 and "-    maxRunners: 5\n" in change["diff"]
        assert f"```diff\n{change['diff']}```" in pull.body
        assert change["url"] == f"https://github.com/acme/platform/pull/{pull.number}"
        assert pull.base == "main" and change["author"] == "ops-bot"

        followed = ops.get(f"/_api/v1/changes/{change['id']}").json()
        assert followed["live"]["value"]["state"] == "open"
        assert followed["live"]["value"]["checks"] == [
            {"name": "ci / build", "status": "queued", "conclusion": None,
             "url": f"https://github.com/acme/platform/runs/{plane.github.checks[pull.head_sha][0].id}"}]
        plane.github.set_check(pull.number, "completed", "success")
        plane.github.merge(pull.number)
        merged = ops.get(f"/_api/v1/changes/{change['id']}").json()["live"]["value"]
        assert merged["state"] == "merged"
        assert merged["checks"][0]["conclusion"] == "success"

        # Merged, the spec says paused; resuming restores what it had.
        fleet = ops.get("/_api/v1/fleet").json()
        assert next(p for p in fleet["pools"]["value"] if p["name"] == "docker")["paused"]
        again = ops.post("/_api/v1/fleet/pools/docker/pause")
        assert again.status_code == 409 and "paused already" in again.json()["message"]
        resumed = ops.post("/_api/v1/fleet/pools/docker/resume")
        assert resumed.status_code == 201
        restored = plane.github.file(plane.github.pulls[resumed.json()["number"]].head,
                                     "fleet.yaml")
        assert restored == before
        plane.github.merge(resumed.json()["number"])


def test_editing_a_pool_is_validated_and_previewed(plane: Plane) -> None:
    with plane.api("operator") as ops:
        preview = ops.post("/_api/v1/fleet/pools/dind/preview", json={"max_runners": 7})
        assert preview.status_code == 200, preview.text
        assert "-    maxRunners: 3\n+    maxRunners: 7\n" in preview.json()["diff"]
        assert preview.json()["source"] == "GitHub acme/platform@main:fleet.yaml"
        pulls = len(plane.github.pulls)
        assert len(plane.github.pulls) == pulls                     # a preview opens nothing
        bad = ops.post("/_api/v1/fleet/pools/dind/preview", json={"min_runners": 9})
        assert bad.status_code == 400
        assert "maxRunners: must be ≥ minRunners (9)" in bad.json()["message"]
        for body in ({"max_runners": -1}, {"image": "bad image"}, {"surprise": 1}):
            assert ops.post("/_api/v1/fleet/pools/dind/preview", json=body).status_code == 400
        assert ops.post("/_api/v1/fleet/pools/nope/preview", json={}).status_code == 404
        edited = ops.post("/_api/v1/fleet/pools/dind/edit", json={"max_runners": 7,
                                                                   "image": "ghcr.io/acme/r:2"})
        assert edited.status_code == 201
        branch = plane.github.pulls[edited.json()["number"]].head
        assert "    maxRunners: 7\n" in plane.github.file(branch, "fleet.yaml")
        listed = ops.get("/_api/v1/changes").json()["changes"]
        assert listed[0]["id"] == edited.json()["id"]


def test_drift_is_what_applying_the_spec_would_change(plane: Plane) -> None:
    with plane.api("viewer") as viewer:
        drift = viewer.get("/_api/v1/fleet/drift").json()
    assert drift["error"] is None, drift
    assert drift["value"]["summary"].startswith("0 to create")
    plane.cluster.patch("actions.github.com/v1alpha1", "AutoscalingRunnerSet", "dind",
                        "arc-runners", {"spec": {"maxRunners": 9}}, manager="kubectl-edit")
    try:
        with plane.api("viewer") as viewer:
            drift = viewer.get("/_api/v1/fleet/drift").json()["value"]
        assert "AutoscalingRunnerSet arc-runners/dind: conflict" in drift["lines"] or \
            "AutoscalingRunnerSet arc-runners/dind: change" in drift["lines"], drift
    finally:   # the cluster is shared by the session's tests
        apply_example(plane.cluster, "--force-conflicts")


def test_remedies_for_runners_and_listeners(plane: Plane) -> None:
    labels = {"actions.github.com/scale-set-name": "nix",
              "actions.github.com/scale-set-namespace": NS}
    plane.cluster.create({"apiVersion": ARC_API, "kind": "EphemeralRunner",
                          "metadata": {"name": "nix-7xk2p-extra", "namespace": NS,
                                       "labels": labels},
                          "spec": {"githubConfigUrl": "https://github.com/acme",
                                   "githubConfigSecret": "github-app", "runnerScaleSetId": 1}})
    with plane.api("operator") as ops:
        gone = ops.delete(f"/_api/v1/fleet/runners/{NS}/nix-7xk2p-extra")
        assert gone.status_code == 200, gone.text
        assert plane.cluster.get(ARC_API, "EphemeralRunner", "nix-7xk2p-extra", NS) is None
        assert ops.delete(f"/_api/v1/fleet/runners/{NS}/nix-7xk2p-extra").status_code == 404
        assert ops.delete("/_api/v1/fleet/runners/kube-system/coredns").status_code == 404
        assert ops.delete(f"/_api/v1/fleet/runners/{NS}/Bad_Name").status_code == 400
        restarted = ops.post(f"/_api/v1/fleet/scale-sets/{NS}/nix/restart-listener")
        assert restarted.status_code == 200, restarted.text
        assert restarted.json()["affected"] == ["arc-systems/nix-754b578d-listener"]
        assert plane.cluster.get(ARC_API, "AutoscalingListener", "nix-754b578d-listener",
                                 "arc-systems") is None
        again = ops.post(f"/_api/v1/fleet/scale-sets/{NS}/nix/restart-listener")
        assert again.status_code == 404 and "no listener" in again.json()["message"]
    with plane.api("viewer") as viewer:
        actions = [e["action"] for e in viewer.get("/_api/v1/audit", params={
            "action": "fleet."}).json()["events"]]
    assert "fleet.runner.delete" in actions and "fleet.listener.restart" in actions


def _deliver(client: httpx.Client, name: str, payload: dict[str, object],
             secret: str = WEBHOOK_SECRET) -> httpx.Response:
    schemas.check_webhook(name, payload)
    body = json.dumps(payload).encode()
    return client.post("/_api/v1/webhooks/github", content=body, headers={
        "x-github-event": "workflow_job", "content-type": "application/json",
        "x-hub-signature-256": signature(secret.encode(), body)})


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _job(job_id: int, action: str, queued: datetime, started: datetime | None,
         pool: str) -> dict[str, object]:
    status = {"queued": "queued", "in_progress": "in_progress", "completed": "completed"}
    job = {"id": job_id, "run_id": 9000 + job_id, "labels": [pool], "status": status[action],
           "name": "build", "created_at": stamp(queued),
           "started_at": stamp(started or queued),
           "conclusion": "success" if action == "completed" else None,
           "completed_at": stamp(started + timedelta(minutes=1))
           if action == "completed" and started else None,
           "runner_name": None if action == "queued" else f"{pool}-7xk2p-busy",
           "runner_id": None if action == "queued" else 5,
           "runner_group_id": None if action == "queued" else 1,
           "runner_group_name": None if action == "queued" else "default"}
    return webhook(f"workflow-job-{action.replace('_', '-')}", action=action,
                   workflow_job=job, repository={"full_name": "acme/web"})


def test_queue_times_from_signed_workflow_job_deliveries(plane: Plane) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with httpx.Client(base_url=plane.url, timeout=30) as github:
        forged = _deliver(github, "workflow-job-queued",
                          _job(1, "queued", now, None, "nix"), secret="wrong")
        assert forged.status_code == 401
        for i, wait in enumerate((10, 20, 30, 40, 300), start=1):
            queued = now - timedelta(minutes=20)
            assert _deliver(github, "workflow-job-queued",
                            _job(i, "queued", queued, None, "nix")).status_code == 202
            started = queued + timedelta(seconds=wait)
            assert _deliver(github, "workflow-job-in-progress",
                            _job(i, "in_progress", queued, started, "nix")).status_code == 202
        assert _deliver(github, "workflow-job-completed",
                        _job(1, "completed", now - timedelta(minutes=20),
                             now - timedelta(minutes=20) + timedelta(seconds=10),
                             "nix")).status_code == 202
        assert _deliver(github, "workflow-job-queued",
                        _job(6, "queued", now, None, "nix")).status_code == 202
        ping = github.post("/_api/v1/webhooks/github", content=b"{}", headers={
            "x-github-event": "ping", "x-hub-signature-256": signature(WEBHOOK_SECRET.encode(),
                                                                       b"{}")})
        assert ping.status_code == 200 and ping.json()["stored"] is False
        bad = b'{"action": "queued"}'
        assert github.post("/_api/v1/webhooks/github", content=bad, headers={
            "x-github-event": "workflow_job",
            "x-hub-signature-256": signature(WEBHOOK_SECRET.encode(), bad)}).status_code == 400
    with plane.api("viewer") as viewer:
        hour = viewer.get("/_api/v1/overview").json()["queue_hour"]["value"]
    nix = next(q for q in hour if q["pool"] == "nix")
    assert (nix["jobs"], nix["p50_seconds"], nix["waiting"]) == (5, 30.0, 1)
    assert (round(nix["p90_seconds"], 6), round(nix["p99_seconds"], 6)) == (196.0, 289.6)

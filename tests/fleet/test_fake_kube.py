"""The fake API server answers like the real one where the product depends on it: TLS and
token auth from its kubeconfig, discovery, Status bodies, resourceVersion, server-side apply
(create vs update, dry run, no-op, conflicts), optimistic concurrency, status subresources."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.fakes.kube.process import FakeCluster

ARS_PATH = "/apis/actions.github.com/v1alpha1/namespaces/default/autoscalingrunnersets"


@pytest.fixture
def api(tmp_path: Path, arc_crds: Path) -> Iterator[httpx.Client]:
    with FakeCluster(tmp_path, arc_crds) as cluster:
        config = yaml.safe_load(cluster.kubeconfig.read_text())
        ca = tmp_path / "ca.crt"
        ca.write_bytes(base64.b64decode(config["clusters"][0]["cluster"][
            "certificate-authority-data"]))
        token = config["users"][0]["user"]["token"]
        with httpx.Client(base_url=config["clusters"][0]["cluster"]["server"],
                          verify=ssl.create_default_context(cafile=ca),
                          headers={"Authorization": f"Bearer {token}"}) as client:
            yield client


def ars(max_runners: int) -> str:
    return json.dumps({"apiVersion": "actions.github.com/v1alpha1",
                       "kind": "AutoscalingRunnerSet", "metadata": {"name": "x"},
                       "spec": {"githubConfigUrl": "https://github.com/a",
                                "githubConfigSecret": "s", "maxRunners": max_runners}})


def apply(api: httpx.Client, body: str, manager: str = "me", **params: str) -> httpx.Response:
    return api.patch(f"{ARS_PATH}/x", content=body,
                     params={"fieldManager": manager, **params},
                     headers={"Content-Type": "application/apply-patch+yaml"})


def test_auth_discovery_and_status_bodies(api: httpx.Client) -> None:
    anonymous = httpx.get(f"{api.base_url}/api/v1/namespaces", verify=False)
    assert anonymous.status_code == 401 and anonymous.json()["reason"] == "Unauthorized"
    groups = api.get("/apis").json()
    assert groups["kind"] == "APIGroupList"
    assert "actions.github.com" in [g["name"] for g in groups["groups"]]
    resources = api.get("/apis/actions.github.com/v1alpha1").json()
    assert {"autoscalingrunnersets", "autoscalingrunnersets/status", "ephemeralrunners"} <= \
        {r["name"] for r in resources["resources"]}
    missing = api.get(f"{ARS_PATH}/nope")
    assert missing.status_code == 404
    assert missing.json() == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'autoscalingrunnersets.actions.github.com "nope" not found',
        "reason": "NotFound", "code": 404,
        "details": {"name": "nope", "group": "actions.github.com",
                    "kind": "autoscalingrunnersets"}}
    gone = api.patch("/apis/actions.github.com/v1alpha1/namespaces/nowhere/"
                     "autoscalingrunnersets/x", content=ars(1), params={"fieldManager": "me"},
                     headers={"Content-Type": "application/apply-patch+yaml"})
    assert gone.status_code == 404 and gone.json()["message"] == 'namespaces "nowhere" not found'


def test_server_side_apply(api: httpx.Client) -> None:
    dry = apply(api, ars(2), dryRun="All")
    assert dry.status_code == 201
    assert api.get(f"{ARS_PATH}/x").status_code == 404
    created = apply(api, ars(2))
    assert created.status_code == 201
    version = created.json()["metadata"]["resourceVersion"]
    same = apply(api, ars(2))
    assert same.status_code == 200
    assert same.json()["metadata"]["resourceVersion"] == version      # a no-op writes nothing
    listed = api.get(ARS_PATH).json()
    assert listed["kind"] == "AutoscalingRunnerSetList"
    assert int(listed["metadata"]["resourceVersion"]) >= int(version)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["x"]

    other = apply(api, ars(3), manager="someone-else")
    assert other.status_code == 409
    assert other.json()["reason"] == "Conflict"
    assert other.json()["details"]["causes"] == [{
        "reason": "FieldManagerConflict", "message": 'conflict with "me" using '
        "actions.github.com/v1alpha1", "field": ".spec.maxRunners"}]
    forced = apply(api, ars(3), manager="someone-else", force="true")
    assert forced.status_code == 200 and forced.json()["spec"]["maxRunners"] == 3
    owners = {m["manager"]: m["fieldsV1"] for m in forced.json()["metadata"]["managedFields"]}
    assert "f:maxRunners" not in owners["me"]["f:spec"]
    assert owners["someone-else"]["f:spec"]["f:maxRunners"] == {}


def test_replace_status_and_resource_versions(api: httpx.Client) -> None:
    live = apply(api, ars(2)).json()
    stale = dict(live, metadata={**live["metadata"], "resourceVersion": "1"})
    refused = api.put(f"{ARS_PATH}/x", json=stale)
    assert refused.status_code == 409
    assert "the object has been modified" in refused.json()["message"]
    ignored = api.patch(f"{ARS_PATH}/x", json={"status": {"currentRunners": 9}},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert "status" not in ignored.json()        # status only through the subresource
    status = api.patch(f"{ARS_PATH}/x/status", json={"status": {"currentRunners": 9}},
                       headers={"Content-Type": "application/merge-patch+json"})
    assert status.json()["status"] == {"currentRunners": 9}
    assert status.json()["spec"] == live["spec"]
    assert api.patch(f"{ARS_PATH}/x", json={}, headers={
        "Content-Type": "application/strategic-merge-patch+json"}).status_code == 415

"""A fleet spec as the Kubernetes objects the ``gha-runner-scale-set`` chart would create for
each scale set: the AutoscalingRunnerSet, the runner service account (and for kubernetes
container mode its Role and RoleBinding), the controller's manager Role and RoleBinding,
plus the namespaces they live in. Secrets are only referenced, never created.

Pure: the same spec, keys and minRunners give the same objects, in the same order."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from flywheel.fleet.rules import container_mode_type
from flywheel.fleet.scalesets import ScaleSet, scale_sets
from flywheel.fleet.spec import Fleet, Pool
from flywheel.fleet.wiring import CacheWiring

ARC_API_VERSION = "actions.github.com/v1alpha1"
RBAC_API_VERSION = "rbac.authorization.k8s.io/v1"
FLEET_LABEL = "gloriousflywheel.dev/fleet"
MANAGED_BY = "gloriousflywheel"
# The chart's finalizer: the ARC controller removes it once it has cleaned up the scale set,
# so the permissions it needs for that cleanup cannot disappear first.
CLEANUP_FINALIZER = "actions.github.com/cleanup-protection"
RUNNER_COMMAND = ["/home/runner/run.sh"]
WORK_DIR = "/home/runner/_work"

Object = dict[str, Any]
MinRunners = Callable[[Pool], int]


def _meta(name: str, namespace: str | None, labels: dict[str, str],
          annotations: dict[str, str] | None = None,
          finalizers: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    if finalizers:
        meta["finalizers"] = [CLEANUP_FINALIZER]
    return meta


class _Names:
    """The chart's names for one scale set's objects."""

    def __init__(self, s: ScaleSet) -> None:
        full = f"{s.name}-gha-rs"[:63].rstrip("-")
        self.no_permission = f"{full}-no-permission"
        self.kube_mode = f"{full}-kube-mode"
        self.manager = f"{full}-manager"


def _labels(fleet: Fleet, s: ScaleSet, component: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": s.name,
        "app.kubernetes.io/instance": s.name,
        # The controller deletes scale sets labelled with a version other than its own.
        "app.kubernetes.io/version": fleet.controller.version,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "gha-rs",
        "actions.github.com/scale-set-name": s.name,
        "actions.github.com/scale-set-namespace": s.namespace,
        FLEET_LABEL: fleet.name,
    }
    if component:
        labels["app.kubernetes.io/component"] = component
    return labels


def _runner_env(mode: str | None, wiring: CacheWiring | None) -> list[dict[str, Any]]:
    env = wiring.env() if wiring else []
    if mode == "dind":
        env += [{"name": "DOCKER_HOST", "value": "unix:///var/run/docker.sock"},
                {"name": "RUNNER_WAIT_FOR_DOCKER_IN_SECONDS", "value": "120"}]
    elif mode == "kubernetes":
        env += [{"name": "ACTIONS_RUNNER_CONTAINER_HOOKS", "value": "/home/runner/k8s/index.js"},
                {"name": "ACTIONS_RUNNER_POD_NAME",
                 "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER", "value": "true"}]
    return env


def _runner_container(pool: Pool, mode: str | None,
                      wiring: CacheWiring | None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "runner", "image": pool.image,
                                 "command": RUNNER_COMMAND}
    env = _runner_env(mode, wiring)
    if env:
        container["env"] = env
    if pool.resources is not None:
        container["resources"] = pool.resources.model_dump(exclude_defaults=True)
    if mode == "dind":
        container["volumeMounts"] = [{"name": "work", "mountPath": WORK_DIR},
                                     {"name": "dind-sock", "mountPath": "/var/run"}]
    elif mode == "kubernetes":
        container["volumeMounts"] = [{"name": "work", "mountPath": WORK_DIR}]
    return container


def _dind_containers(pool: Pool) -> list[dict[str, Any]]:
    dind = pool.dind
    image = dind.image if dind else "docker:dind"
    args = ["dockerd", "--host=unix:///var/run/docker.sock", "--group=$(DOCKER_GROUP_GID)"]
    if dind and dind.mtu:
        args.append(f"--mtu={dind.mtu}")
    args += [f"--default-address-pool={p}" for p in (dind.default_address_pools if dind else [])]
    return [
        {"name": "init-dind-externals", "image": pool.image, "command": ["cp"],
         "args": ["-r", "/home/runner/externals/.", "/home/runner/tmpDir/"],
         "volumeMounts": [{"name": "dind-externals", "mountPath": "/home/runner/tmpDir"}]},
        # A native sidecar (an init container that keeps running; Kubernetes >= 1.29).
        {"name": "dind", "image": image, "args": args,
         "env": [{"name": "DOCKER_GROUP_GID", "value": "123"}],
         "securityContext": {"privileged": True}, "restartPolicy": "Always",
         "startupProbe": {"exec": {"command": ["docker", "info"]}, "initialDelaySeconds": 0,
                          "failureThreshold": 24, "periodSeconds": 5},
         "volumeMounts": [{"name": "work", "mountPath": WORK_DIR},
                          {"name": "dind-sock", "mountPath": "/var/run"},
                          {"name": "dind-externals", "mountPath": "/home/runner/externals"}]},
    ]


def _volumes(pool: Pool, mode: str | None) -> list[dict[str, Any]]:
    if mode == "dind":
        return [{"name": "dind-sock", "emptyDir": {}}, {"name": "dind-externals", "emptyDir": {}},
                {"name": "work", "emptyDir": {}}]
    if mode == "kubernetes":
        assert pool.container_mode is not None and pool.container_mode.work_volume_claim
        claim = pool.container_mode.work_volume_claim
        return [{"name": "work", "ephemeral": {"volumeClaimTemplate": {"spec": {
            "accessModes": list(claim.access_modes),
            "storageClassName": claim.storage_class_name,
            "resources": {"requests": {"storage": claim.size}}}}}}]
    return []


def pod_template(s: ScaleSet, wiring: CacheWiring | None) -> dict[str, Any]:
    pool = s.pool
    mode = container_mode_type(pool)
    names = _Names(s)
    spec: dict[str, Any] = {"restartPolicy": "Never",
                            "serviceAccountName": names.kube_mode if mode == "kubernetes"
                            else names.no_permission}
    if pool.node_selector:
        spec["nodeSelector"] = dict(pool.node_selector)
    if pool.tolerations:
        spec["tolerations"] = [dict(t) for t in pool.tolerations]
    if mode == "dind":
        spec["initContainers"] = _dind_containers(pool)
    spec["containers"] = [_runner_container(pool, mode, wiring)]
    volumes = _volumes(pool, mode)
    if volumes:
        spec["volumes"] = volumes
    template: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    if pool.labels:
        metadata["labels"] = dict(pool.labels)
    if pool.annotations:
        metadata["annotations"] = dict(pool.annotations)
    if metadata:
        template["metadata"] = metadata
    template["spec"] = spec
    return template


def _values_hash(fleet: Fleet, s: ScaleSet, wiring: CacheWiring | None) -> str:
    # Like the chart's values hash: changes whenever anything that shapes the set changes.
    settings = {"scope": s.scope, "secret": s.github_secret, "group": s.runner_group,
                "pool": s.pool.model_dump(mode="json"), "wiring": wiring and wiring.env(),
                "controller": fleet.controller.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:63]


def _wiring(fleet: Fleet, pool: Pool, keys: dict[str, str]) -> CacheWiring | None:
    if pool.cache is None or fleet.cache_server is None:
        return None
    return CacheWiring(url=fleet.cache_server.url, nix_cache=pool.cache.nix,
                       bazel_cache=pool.cache.bazel, token_secret=pool.cache.token_secret,
                       public_key=keys.get(pool.cache.nix) if pool.cache.nix else None)


def autoscaling_runner_set(fleet: Fleet, s: ScaleSet, wiring: CacheWiring | None,
                           min_runners: int) -> Object:
    names = _Names(s)
    mode = container_mode_type(s.pool)
    annotations = {"actions.github.com/values-hash": _values_hash(fleet, s, wiring),
                   "actions.github.com/cleanup-manager-role-binding": names.manager,
                   "actions.github.com/cleanup-manager-role-name": names.manager}
    if mode == "kubernetes":
        annotations |= {
            "actions.github.com/cleanup-kubernetes-mode-role-binding-name": names.kube_mode,
            "actions.github.com/cleanup-kubernetes-mode-role-name": names.kube_mode,
            "actions.github.com/cleanup-kubernetes-mode-service-account-name": names.kube_mode}
    else:
        annotations["actions.github.com/cleanup-no-permission-service-account-name"] = \
            names.no_permission
    spec: dict[str, Any] = {"githubConfigUrl": s.scope, "githubConfigSecret": s.github_secret}
    if s.runner_group:
        spec["runnerGroup"] = s.runner_group
    spec |= {"runnerScaleSetName": s.runs_on, "maxRunners": s.pool.max_runners,
             "minRunners": min_runners, "template": pod_template(s, wiring)}
    return {"apiVersion": ARC_API_VERSION, "kind": "AutoscalingRunnerSet",
            "metadata": _meta(s.name, s.namespace,
                              _labels(fleet, s, "autoscaling-runner-set"), annotations),
            "spec": spec}


def _role(name: str, namespace: str, labels: dict[str, str],
          rules: list[tuple[str, str, list[str]]]) -> Object:
    return {"apiVersion": RBAC_API_VERSION, "kind": "Role",
            "metadata": _meta(name, namespace, labels, finalizers=True),
            "rules": [{"apiGroups": [group], "resources": [resource], "verbs": verbs}
                      for group, resource, verbs in rules]}


def _role_binding(name: str, namespace: str, labels: dict[str, str], role: str,
                  account: str, account_namespace: str) -> Object:
    return {"apiVersion": RBAC_API_VERSION, "kind": "RoleBinding",
            "metadata": _meta(name, namespace, labels, finalizers=True),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": account,
                          "namespace": account_namespace}]}


_CRUD = ["create", "delete", "get", "list", "patch", "update"]
# What the controller does in a scale set's namespace (the chart's manager role).
MANAGER_RULES = [("", "pods", ["create", "delete", "get", "update", "patch"]),
                 ("", "pods/status", ["get"]), ("", "secrets", _CRUD),
                 ("", "serviceaccounts", _CRUD),
                 ("rbac.authorization.k8s.io", "rolebindings",
                  ["create", "delete", "get", "patch", "update"]),
                 ("rbac.authorization.k8s.io", "roles", ["create", "delete", "get", "patch",
                                                         "update"])]
# What the runner's container hook needs to run job containers as pods.
KUBE_MODE_RULES = [("", "pods", ["get", "list", "create", "delete", "update", "patch"]),
                   ("", "pods/exec", ["get", "create"]),
                   ("", "pods/log", ["get", "list", "watch"]),
                   ("batch", "jobs", ["get", "list", "create", "delete"]),
                   ("", "secrets", ["get", "list", "create", "delete"])]


def scale_set_objects(fleet: Fleet, s: ScaleSet, keys: dict[str, str],
                      min_runners: int) -> list[Object]:
    names = _Names(s)
    ns = s.namespace
    wiring = _wiring(fleet, s.pool, keys)
    objects: list[Object] = []
    if container_mode_type(s.pool) == "kubernetes":
        labels = _labels(fleet, s)
        objects += [
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": _meta(names.kube_mode, ns, labels, finalizers=True)},
            _role(names.kube_mode, ns, labels, KUBE_MODE_RULES),
            _role_binding(names.kube_mode, ns, labels, names.kube_mode, names.kube_mode, ns)]
    else:
        objects.append({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": _meta(names.no_permission, ns, _labels(fleet, s),
                                          finalizers=True)})
    objects += [
        _role(names.manager, ns, _labels(fleet, s, "manager-role"), MANAGER_RULES),
        _role_binding(names.manager, ns, _labels(fleet, s, "manager-role-binding"),
                      names.manager, fleet.controller.service_account,
                      fleet.controller.namespace),
        autoscaling_runner_set(fleet, s, wiring, min_runners)]
    return objects


def namespace_object(fleet: Fleet, name: str) -> Object:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": MANAGED_BY,
                                                  FLEET_LABEL: fleet.name}}}


def render(fleet: Fleet, keys: dict[str, str],
           min_runners: MinRunners | None = None) -> list[Object]:
    """Namespaces first, then each scale set's objects in the order they can be applied.
    ``min_runners`` picks each pool's minRunners (a schedule's); by default its own."""
    sets = scale_sets(fleet)
    pick = min_runners or (lambda pool: pool.min_runners)
    objects = [namespace_object(fleet, ns) for ns in sorted({s.namespace for s in sets})]
    for s in sets:
        objects += scale_set_objects(fleet, s, keys, pick(s.pool))
    return objects

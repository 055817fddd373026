"""The fleet as it runs: each scale set of the spec with its live status and ephemeral
runners (phase, job, age), the stuck ones with why; and the operator's remedies: delete a
runner, restart a scale set's listener (ARC's controller makes a new one)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flywheel.errors import Invalid, NotFound
from flywheel.fleet.kube import Cluster, Object, Ref
from flywheel.fleet.render import ARC_API_VERSION
from flywheel.fleet.scalesets import ScaleSet, scale_sets
from flywheel.fleet.spec import DNS_LABEL, Fleet
from flywheel.fleet.status import SCALE_SET_LABEL, ScaleSetStatus, Stuck, scale_set_status

# AutoscalingListener is among the kinds flywheel.fleet.kube registers with lightkube.
SCALE_SET_NAMESPACE_LABEL = "actions.github.com/scale-set-namespace"
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@dataclass(frozen=True)
class Runner:
    name: str
    phase: str
    job: str | None           # repository and job, while it runs one
    age_seconds: int
    stuck: str | None


@dataclass
class ScaleSetView:
    scale_set: ScaleSet
    status: ScaleSetStatus
    runners: list[Runner] = field(default_factory=list)

    @property
    def pool(self) -> str:
        return self.scale_set.runs_on


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _job(status: Object) -> str | None:
    repo = status.get("jobRepositoryName")
    name = status.get("jobDisplayName") or status.get("jobWorkflowRef")
    if not repo and not name:
        return None
    return " · ".join(str(x) for x in (repo, name) if x)


def scale_set_view(cluster: Cluster, s: ScaleSet, at: datetime,
                   pending_limit: float) -> ScaleSetView:
    status = scale_set_status(cluster, s, at, timedelta(seconds=pending_limit))
    view = ScaleSetView(s, status)
    if not status.exists:
        return view
    stuck: dict[str, Stuck] = {x.runner: x for x in status.stuck}
    for runner in cluster.list(ARC_API_VERSION, "EphemeralRunner", namespace=s.namespace,
                               labels={SCALE_SET_LABEL: s.name}):
        meta, live = runner["metadata"], runner.get("status") or {}
        created = meta.get("creationTimestamp")
        age = int((at - _time(created)).total_seconds()) if created else 0
        found = stuck.get(meta["name"])
        view.runners.append(Runner(meta["name"], live.get("phase") or "Pending", _job(live),
                                   max(age, 0), found.reason if found else None))
    view.runners.sort(key=lambda r: (r.stuck is None, r.name))
    return view


def fleet_view(cluster: Cluster, fleet: Fleet, at: datetime,
               pending_limit: float) -> list[ScaleSetView]:
    cluster.check_arc()
    return [scale_set_view(cluster, s, at, pending_limit) for s in scale_sets(fleet)]


def _object_name(namespace: str, name: str) -> None:
    """Names a caller sends go into API paths: only what Kubernetes could have named."""
    if not DNS_LABEL.fullmatch(namespace) or len(namespace) > 63 or \
            not _DNS_SUBDOMAIN.fullmatch(name) or len(name) > 253:
        raise Invalid(f"{namespace[:63]!r}/{name[:63]!r} is not a Kubernetes namespace and "
                      "object name")


def find_scale_set(fleet: Fleet, namespace: str, name: str) -> ScaleSet:
    for s in scale_sets(fleet):
        if s.namespace == namespace and s.name == name:
            return s
    raise NotFound(f"the fleet spec has no scale set {namespace}/{name}")


def delete_runner(cluster: Cluster, fleet: Fleet, namespace: str, name: str) -> str:
    """Delete one ephemeral runner of this fleet's scale sets (ARC replaces it if needed);
    returns its scale set's name. Runners of anything else are not this plane's to touch."""
    _object_name(namespace, name)
    ref = Ref(ARC_API_VERSION, "EphemeralRunner", namespace, name)
    runner = cluster.get(ref)
    owner = ((runner or {}).get("metadata", {}).get("labels") or {}).get(SCALE_SET_LABEL)
    if runner is None or owner is None:
        raise NotFound(f"no runner {namespace}/{name} of this fleet")
    find_scale_set(fleet, namespace, owner)
    cluster.delete(ref)
    return str(owner)


def restart_listener(cluster: Cluster, fleet: Fleet, namespace: str, name: str) -> list[str]:
    """Delete the scale set's AutoscalingListener(s); the controller starts a new one (the
    cure for a listener stuck in a crash loop on a 409 session conflict). Returns the
    listeners deleted."""
    _object_name(namespace, name)
    find_scale_set(fleet, namespace, name)
    listeners = [o for o in cluster.list(ARC_API_VERSION, "AutoscalingListener",
                                         labels={SCALE_SET_LABEL: name})
                 if (o["metadata"].get("labels") or {}).get(SCALE_SET_NAMESPACE_LABEL,
                                                            namespace) == namespace]
    if not listeners:
        raise NotFound(f"scale set {namespace}/{name} has no listener running")
    for listener in listeners:
        meta = listener["metadata"]
        cluster.delete(Ref(ARC_API_VERSION, "AutoscalingListener", meta.get("namespace"),
                           meta["name"]))
    return [f"{o['metadata'].get('namespace')}/{o['metadata']['name']}" for o in listeners]

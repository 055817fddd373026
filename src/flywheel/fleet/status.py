"""Live state per scale set: runners current and desired, ephemeral runners by phase, and
the stuck ones named with why: Failed (ARC gives up after five pod failures), Pending for
longer than a threshold (usually an image that cannot be pulled), Running with no pod."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flywheel.fleet.kube import Cluster, Object, Ref
from flywheel.fleet.render import ARC_API_VERSION
from flywheel.fleet.scalesets import ScaleSet

SCALE_SET_LABEL = "actions.github.com/scale-set-name"   # ARC puts it on runner sets and runners


@dataclass(frozen=True)
class Stuck:
    runner: str
    phase: str
    reason: str


@dataclass
class ScaleSetStatus:
    scale_set: ScaleSet
    exists: bool
    min_runners: int | None = None
    max_runners: int | None = None
    current: int = 0
    desired: int = 0
    phases: Counter[str] = field(default_factory=Counter)
    stuck: list[Stuck] = field(default_factory=list)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _pod_reason(pod: Object | None) -> str | None:
    """Why a pod is not running, from its containers' waiting states."""
    statuses = (pod or {}).get("status", {})
    for status in (statuses.get("initContainerStatuses") or []) + \
            (statuses.get("containerStatuses") or []):
        waiting = (status.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            message = waiting.get("message")
            return f"{status.get('name')}: {waiting['reason']}" + (f" ({message})" if message
                                                                   else "")
    return None


def _stuck(runner: Object, pod: Object | None, at: datetime,
           pending_limit: timedelta) -> Stuck | None:
    name = runner["metadata"]["name"]
    status = runner.get("status") or {}
    phase = status.get("phase") or "Pending"
    own = status.get("message") or status.get("reason")
    if phase == "Failed":
        failures = len(status.get("failures") or {})
        return Stuck(name, phase, own or f"its pod failed {failures} times")
    if phase == "Running" and pod is None:
        return Stuck(name, phase, "Running, but its pod is gone: the runner will never take "
                                  "a job (delete the EphemeralRunner)")
    if phase == "Pending":
        age = at - _time(runner["metadata"]["creationTimestamp"])
        if age > pending_limit:
            why = _pod_reason(pod) or own or ("no pod yet" if pod is None else "pod pending")
            return Stuck(name, phase, f"Pending for {int(age.total_seconds() // 60)}m: {why}")
    return None


def scale_set_status(cluster: Cluster, s: ScaleSet, at: datetime,
                     pending_limit: timedelta) -> ScaleSetStatus:
    ars = cluster.get(Ref(ARC_API_VERSION, "AutoscalingRunnerSet", s.namespace, s.name))
    if ars is None:
        return ScaleSetStatus(s, exists=False)
    spec, live_status = ars.get("spec", {}), ars.get("status") or {}
    found = ScaleSetStatus(s, exists=True, min_runners=spec.get("minRunners"),
                           max_runners=spec.get("maxRunners"),
                           current=int(live_status.get("currentRunners") or 0))
    selector = {SCALE_SET_LABEL: s.name}
    found.desired = sum(int((r.get("spec") or {}).get("replicas") or 0) for r in cluster.list(
        ARC_API_VERSION, "EphemeralRunnerSet", namespace=s.namespace, labels=selector))
    runners = cluster.list(ARC_API_VERSION, "EphemeralRunner", namespace=s.namespace,
                           labels=selector)
    pods = {p["metadata"]["name"]: p for p in cluster.list("v1", "Pod", namespace=s.namespace)}
    for runner in runners:
        found.phases[(runner.get("status") or {}).get("phase") or "Pending"] += 1
        # ARC names a runner's pod after the runner.
        stuck = _stuck(runner, pods.get(runner["metadata"]["name"]), at, pending_limit)
        if stuck is not None:
            found.stuck.append(stuck)
    return found

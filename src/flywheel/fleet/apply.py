"""Applying a plan: server-side apply of every object under the fleet's field managers
(nothing at all when the plan has conflicts and takeover was not asked for), then, only
when asked, deleting what the fleet made earlier and the spec no longer names."""

from __future__ import annotations

from dataclasses import dataclass

from flywheel.fleet.kube import Cluster, KubeError, Object, Ref
from flywheel.fleet.plan import MANAGER, SCHEDULE_MANAGER, Plan, split_min_runners


@dataclass(frozen=True)
class Applied:
    ref: Ref
    action: str          # created, changed, unchanged


def apply_object(cluster: Cluster, obj: Object, live: Object | None, *, force: bool) -> Applied:
    main, minimum = split_min_runners(obj)
    result = cluster.apply(main, MANAGER, force=force)
    if minimum is not None:
        result = cluster.apply(minimum, SCHEDULE_MANAGER, force=force)
    if live is None:
        return Applied(Ref.of(obj), "created")
    same = result["metadata"].get("resourceVersion") == live["metadata"].get("resourceVersion")
    return Applied(Ref.of(obj), "unchanged" if same else "changed")


def apply(cluster: Cluster, plan: Plan, objects: list[Object], *,
          force: bool = False) -> list[Applied]:
    if plan.conflicts and not force:
        raise KubeError(f"{len(plan.conflicts)} objects have fields another manager owns; "
                        "nothing was applied (--force-conflicts takes them over)")
    live = {s.ref: s.live for s in plan.steps}
    return [apply_object(cluster, obj, live.get(Ref.of(obj)), force=force) for obj in objects]


@dataclass(frozen=True)
class Deleted:
    ref: Ref
    waiting_for: list[str]       # finalizers still on it: deleted once they are removed


def prune(cluster: Cluster, plan: Plan) -> list[Deleted]:
    done = []
    for step in plan.deletions:
        cluster.delete(step.ref)
        left = cluster.get(step.ref)
        done.append(Deleted(step.ref, list((left or {}).get("metadata", {}).get("finalizers")
                                           or [])))
    return done

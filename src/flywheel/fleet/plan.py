"""What applying a fleet would change, worked out by the cluster itself: each object is
applied as a server-side dry run, and the result compared with the live object. Objects
this fleet made earlier (by label) that the spec no longer names are to be deleted.

Two field managers share the work: one owns everything it renders but a scale set's
minRunners, the other owns minRunners alone, so ``reconcile`` can follow the schedules
without ever touching (or needing) the rest of the spec."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from flywheel.fleet.diff import FieldChange, field_changes
from flywheel.fleet.kube import Cluster, KubeError, Object, Ref
from flywheel.fleet.render import ARC_API_VERSION, FLEET_LABEL, RBAC_API_VERSION

MANAGER = "gloriousflywheel-fleet"
SCHEDULE_MANAGER = "gloriousflywheel-schedule"
# What a fleet owns, in the order to delete it: the scale set first, so the controller
# still has its permissions while it cleans up runners.
PRUNABLE = [(ARC_API_VERSION, "AutoscalingRunnerSet"), (RBAC_API_VERSION, "RoleBinding"),
            (RBAC_API_VERSION, "Role"), ("v1", "ServiceAccount")]


def split_min_runners(obj: Object) -> tuple[Object, Object | None]:
    """(the object without spec.minRunners, the minRunners-only object) for a scale set."""
    if obj["kind"] != "AutoscalingRunnerSet":
        return obj, None
    main = copy.deepcopy(obj)
    minimum = main["spec"].pop("minRunners")
    meta = obj["metadata"]
    return main, {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
                  "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                  "spec": {"minRunners": minimum}}


@dataclass
class Step:
    ref: Ref
    action: str                           # create, change, unchanged, delete, conflict
    changes: list[FieldChange] = field(default_factory=list)
    live: Object | None = None
    conflict: str | None = None


@dataclass
class Plan:
    steps: list[Step]
    unused_namespaces: list[str]

    def count(self, action: str) -> int:
        return sum(1 for s in self.steps if s.action == action)

    @property
    def conflicts(self) -> list[Step]:
        return [s for s in self.steps if s.action == "conflict"]

    @property
    def deletions(self) -> list[Step]:
        return [s for s in self.steps if s.action == "delete"]

    def summary(self) -> str:
        return (f"{self.count('create')} to create, {self.count('change')} to change, "
                f"{self.count('delete')} to delete, {self.count('unchanged')} unchanged"
                + (f", {self.count('conflict')} in conflict" if self.conflicts else ""))


def preview(cluster: Cluster, obj: Object, force: bool) -> Object:
    """``obj`` as the cluster would store it after an apply (a dry run)."""
    main, minimum = split_min_runners(obj)
    result = cluster.apply(main, MANAGER, force=force, dry_run=True)
    if minimum is not None:
        result["spec"]["minRunners"] = minimum["spec"]["minRunners"]
    return result


def _step(cluster: Cluster, obj: Object, created_namespaces: set[str], force: bool) -> Step:
    ref = Ref.of(obj)
    if ref.namespace in created_namespaces:
        return Step(ref, "create")
    live = cluster.get(ref)
    if live is None and ref.kind == "Namespace":
        created_namespaces.add(ref.name)
    try:
        after = preview(cluster, obj, force)
    except KubeError as e:
        if e.conflicts:
            return Step(ref, "conflict", live=live, conflict=str(e))
        raise
    if live is None:
        return Step(ref, "create")
    changes = field_changes(live, after)
    return Step(ref, "change" if changes else "unchanged", changes, live)


def orphans(cluster: Cluster, fleet: str, wanted: set[Ref]) -> list[Ref]:
    found = []
    for api_version, kind in PRUNABLE:
        for obj in cluster.list(api_version, kind, labels={FLEET_LABEL: fleet}):
            ref = Ref.of({**obj, "apiVersion": api_version, "kind": kind})
            if ref not in wanted and not obj["metadata"].get("deletionTimestamp"):
                found.append(ref)
    return found


def unused_namespaces(cluster: Cluster, fleet: str, wanted: set[Ref]) -> list[str]:
    names = {r.name for r in wanted if r.kind == "Namespace"}
    return sorted(o["metadata"]["name"] for o in cluster.list("v1", "Namespace",
                                                               labels={FLEET_LABEL: fleet})
                  if o["metadata"]["name"] not in names)


def plan(cluster: Cluster, fleet: str, objects: list[Object], *, force: bool = False) -> Plan:
    cluster.check_arc()
    created: set[str] = set()
    steps = [_step(cluster, obj, created, force) for obj in objects]
    wanted = {Ref.of(o) for o in objects}
    steps += [Step(ref, "delete") for ref in orphans(cluster, fleet, wanted)]
    return Plan(steps, unused_namespaces(cluster, fleet, wanted))


def describe(step: Step) -> list[str]:
    """A step as lines for people: the object and what happens, then changed fields."""
    lines = [f"{step.ref}: {step.action}"]
    if step.action == "conflict":
        lines.append(f"  {step.conflict}")
    lines += [f"  {change}" for change in step.changes]
    return lines

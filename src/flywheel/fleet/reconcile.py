"""Following the schedules: each live scale set's minRunners set to what its pool's
schedules say now, through the schedule's own field manager and nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flywheel.fleet.kube import Cluster, Ref
from flywheel.fleet.plan import SCHEDULE_MANAGER
from flywheel.fleet.render import ARC_API_VERSION
from flywheel.fleet.scalesets import ScaleSet
from flywheel.fleet.schedule import min_runners_at


@dataclass(frozen=True)
class Adjustment:
    scale_set: ScaleSet
    before: int | None        # None: the scale set is not in the cluster (not applied yet)
    after: int
    window: str | None

    @property
    def changed(self) -> bool:
        return self.before is not None and self.before != self.after


def reconcile_scale_set(cluster: Cluster, s: ScaleSet, at: datetime, force: bool) -> Adjustment:
    wanted = min_runners_at(s.pool, at)
    ref = Ref(ARC_API_VERSION, "AutoscalingRunnerSet", s.namespace, s.name)
    live = cluster.get(ref)
    if live is None:
        return Adjustment(s, None, wanted.min_runners, wanted.window)
    before = int(live.get("spec", {}).get("minRunners") or 0)
    if before != wanted.min_runners:
        # Only ever sent for a scale set that exists: an apply of this partial object
        # would otherwise create a scale set with nothing but minRunners.
        cluster.apply({"apiVersion": ARC_API_VERSION, "kind": "AutoscalingRunnerSet",
                       "metadata": {"name": s.name, "namespace": s.namespace},
                       "spec": {"minRunners": wanted.min_runners}}, SCHEDULE_MANAGER,
                      force=force)
    return Adjustment(s, before, wanted.min_runners, wanted.window)

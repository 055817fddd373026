"""The overview: per pool runners by what they do and queue times, per cache traffic, and
the alerts (stuck runners, a size bound nearly reached, a state lock held too long), each
with its source."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from flywheel.operator.caches_view import DAY, CacheFigures
from flywheel.operator.fleet_view import ScaleSetView
from flywheel.operator.jobs import QueueTimes
from flywheel.operator.sourced import Sourced
from flywheel.operator.traffic import HOUR


@dataclass(frozen=True)
class PoolRunners:
    pool: str
    scale_sets: int
    idle: int
    busy: int
    pending: int
    failed: int
    stuck: int


@dataclass(frozen=True)
class Alert:
    kind: str        # stuck-runner, size-bound, state-lock
    message: str
    source: str


@dataclass
class Overview:
    pools: Sourced[list[PoolRunners]]
    queue_hour: Sourced[list[QueueTimes]]
    queue_day: Sourced[list[QueueTimes]]
    caches: Sourced[list[CacheFigures]]
    bazel_bound: Sourced[tuple[int, int | None]]
    alerts: list[Alert] = field(default_factory=list)


def pool_runners(views: list[ScaleSetView]) -> list[PoolRunners]:
    pools: dict[str, list[int]] = {}
    for view in views:
        counts = pools.setdefault(view.pool, [0, 0, 0, 0, 0, 0])
        counts[0] += 1
        for runner in view.runners:
            if runner.phase == "Running":
                counts[2 if runner.job else 1] += 1
            elif runner.phase == "Pending":
                counts[3] += 1
            elif runner.phase == "Failed":
                counts[4] += 1
        counts[5] += len(view.status.stuck)
    return [PoolRunners(pool, *counts) for pool, counts in pools.items()]


def queue_windows(now: float | None = None) -> tuple[int, int]:
    at = int(now or time.time())
    return at - HOUR, at - DAY


def alerts(fleet: Sourced[list[ScaleSetView]], bound: Sourced[tuple[int, int | None]],
           size_alert: float, locks: list[Alert]) -> list[Alert]:
    found = [Alert("stuck-runner", f"{v.scale_set.namespace}/{v.scale_set.name}: runner "
                   f"{s.runner} ({s.phase}): {s.reason}", fleet.source)
             for v in fleet.value or [] for s in v.status.stuck]
    if bound.value is not None:
        used, limit = bound.value
        if limit and used >= size_alert * limit:
            found.append(Alert("size-bound", f"Bazel content uses {used} of its {limit} "
                               f"bytes ({used / limit:.0%})", bound.source))
    return found + locks

"""Schedules: which window of a pool is open at an instant, and so its minRunners then."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim

from flywheel.fleet.spec import Pool, Schedule


@dataclass(frozen=True)
class ScheduledMin:
    min_runners: int
    window: str | None       # the open window, or None for the pool's own minRunners


def _last_fire(expr: str, at: datetime) -> datetime:
    # CronSim in reverse yields times strictly before its start: start just after this minute
    # so a window opening at this very minute counts as open.
    after = at.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return next(CronSim(expr, after, reverse=True))


def is_open(schedule: Schedule, at: datetime) -> bool:
    local = at.astimezone(ZoneInfo(schedule.time_zone))
    return _last_fire(schedule.start, local) > _last_fire(schedule.end, local)


def min_runners_at(pool: Pool, at: datetime) -> ScheduledMin:
    """The first open window wins; with none open, the pool's own minRunners."""
    for schedule in pool.schedules:
        if is_open(schedule, at):
            return ScheduledMin(schedule.min_runners, schedule.name)
    return ScheduledMin(pool.min_runners, None)

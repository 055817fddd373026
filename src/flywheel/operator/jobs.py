"""Queue times per pool, from GitHub's ``workflow_job`` events: a job's ``queued`` →
``in_progress`` is the time it waited for a runner. One row per job, updated as its events
arrive (in any order, and again on redelivery)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from flywheel.db.engine import Database
from flywheel.errors import Invalid
from flywheel.operator.schema import workflow_jobs

# Labels GitHub adds for any self-hosted runner; the pool is the label the job asked for.
GENERIC_LABELS = frozenset({"self-hosted", "linux", "x64", "arm64"})
MAX_JOBS_READ = 100_000


@dataclass(frozen=True)
class JobEvent:
    id: int
    action: str                 # queued, waiting, in_progress, completed
    pool: str
    labels: list[str]
    repository: str
    run_id: int
    name: str
    runner_name: str | None
    status: str
    conclusion: str | None
    created_at: int | None      # queued
    started_at: int | None
    completed_at: int | None


@dataclass(frozen=True)
class QueueTimes:
    pool: str
    jobs: int                   # jobs that started in the window
    p50: float | None           # seconds
    p90: float | None
    p99: float | None
    waiting: int                # queued and not started now


def _epoch(value: Any) -> int | None:
    if not value:
        return None
    try:
        return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise Invalid(f"not a timestamp: {str(value)[:40]!r}") from None


def pool_of(labels: list[str]) -> str:
    chosen = [label for label in labels if label.lower() not in GENERIC_LABELS]
    return (chosen or labels or ["unlabelled"])[0][:100]


def job_event(payload: dict[str, Any]) -> JobEvent:
    """The parts of a ``workflow_job`` payload we keep; anything malformed is ``Invalid``."""
    try:
        job = payload["workflow_job"]
        labels = [str(label) for label in job.get("labels") or []]
        started = _epoch(job.get("started_at"))
        status = str(job["status"])
        return JobEvent(
            id=int(job["id"]), action=str(payload["action"]), pool=pool_of(labels),
            labels=labels, repository=str(payload["repository"]["full_name"])[:255],
            run_id=int(job["run_id"]), name=str(job.get("name") or "")[:255],
            runner_name=(str(job["runner_name"])[:255] if job.get("runner_name") else None),
            status=status[:16], conclusion=(str(job["conclusion"])[:32]
                                            if job.get("conclusion") else None),
            created_at=_epoch(job.get("created_at")),
            # A queued job carries a started_at of its own creation: not a start yet.
            started_at=started if status in ("in_progress", "completed") else None,
            completed_at=_epoch(job.get("completed_at")))
    except (KeyError, TypeError, ValueError) as e:
        raise Invalid(f"not a workflow_job event: {e}") from None


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    rank = q * (len(sorted_values) - 1)
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


class JobStore:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    def record(self, event: JobEvent) -> None:
        values = {"pool": event.pool, "labels": json.dumps(event.labels),
                  "repository": event.repository, "run_id": event.run_id, "name": event.name,
                  "updated_at": int(self._clock())}
        # Times only ever fill in: a late "queued" redelivery never erases a start.
        times = {k: v for k, v in (("queued_at", event.created_at),
                                   ("started_at", event.started_at),
                                   ("completed_at", event.completed_at)) if v is not None}
        progress = {"status": event.status, "conclusion": event.conclusion,
                    "runner_name": event.runner_name}
        with self._db.write() as conn:
            row = conn.execute(select(workflow_jobs.c.status).where(
                workflow_jobs.c.id == event.id)).first()
            if row is None:
                conn.execute(insert(workflow_jobs).values(id=event.id, **values, **times,
                                                          **progress))
                return
            order = ("queued", "waiting", "in_progress", "completed")
            later = (order.index(event.status) if event.status in order else 0) >= \
                (order.index(row.status) if row.status in order else 0)
            conn.execute(update(workflow_jobs).where(workflow_jobs.c.id == event.id).values(
                **values, **times, **({k: v for k, v in progress.items() if v is not None}
                                      if later else {})))

    def queue_times(self, since: int) -> list[QueueTimes]:
        """Per pool: jobs that started since an instant, their wait percentiles, and how
        many wait now."""
        with self._db.read() as conn:
            started = conn.execute(select(
                workflow_jobs.c.pool, workflow_jobs.c.started_at - workflow_jobs.c.queued_at)
                .where(workflow_jobs.c.started_at >= since,
                       workflow_jobs.c.queued_at.is_not(None))
                .limit(MAX_JOBS_READ)).all()
            waiting = conn.execute(select(workflow_jobs.c.pool).where(
                workflow_jobs.c.started_at.is_(None),
                workflow_jobs.c.completed_at.is_(None),
                workflow_jobs.c.status.in_(("queued", "waiting")))).all()
        waits: dict[str, list[float]] = {}
        for pool, wait in started:
            waits.setdefault(pool, []).append(max(0.0, float(wait)))
        queued: dict[str, int] = {}
        for (pool,) in waiting:
            queued[pool] = queued.get(pool, 0) + 1
        found = []
        for pool in sorted(set(waits) | set(queued)):
            values = sorted(waits.get(pool, []))
            found.append(QueueTimes(pool, len(values), percentile(values, 0.5),
                                    percentile(values, 0.9), percentile(values, 0.99),
                                    queued.get(pool, 0)))
        return found

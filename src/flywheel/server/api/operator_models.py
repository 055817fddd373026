"""Wire models of the operator plane's JSON API (``/_api/v1/...``); the OpenAPI document is
generated from these and the route table."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Sourced(BaseModel, Generic[T]):
    """A figure with its source; ``error`` (and no value) when the source was unreachable."""

    source: str
    value: T | None = None
    error: str | None = None


class PoolRunners(BaseModel):
    pool: str
    scale_sets: int
    idle: int
    busy: int
    pending: int
    failed: int
    stuck: int


class QueueTimes(BaseModel):
    pool: str
    jobs: int
    p50_seconds: float | None
    p90_seconds: float | None
    p99_seconds: float | None
    waiting: int


class CacheFigures(BaseModel):
    name: str
    public: bool
    priority: int
    paths: int
    nar_bytes: int
    ac_entries: int
    ac_bytes: int
    cas_blobs: int
    cas_bytes: int
    retention_seconds: int | None
    public_key: str
    hits_day: int
    misses_day: int
    hit_rate_day: float | None
    bytes_served_day: int
    recent_pushes: int


class BazelBound(BaseModel):
    used_bytes: int
    max_bytes: int | None


class Alert(BaseModel):
    kind: str
    message: str
    source: str


class Overview(BaseModel):
    pools: Sourced[list[PoolRunners]]
    queue_hour: Sourced[list[QueueTimes]]
    queue_day: Sourced[list[QueueTimes]]
    caches: Sourced[list[CacheFigures]]
    bazel_bound: Sourced[BazelBound]
    alerts: list[Alert]


class Runner(BaseModel):
    name: str
    phase: str
    job: str | None
    age_seconds: int
    stuck: str | None


class ScaleSet(BaseModel):
    name: str
    namespace: str
    pool: str
    scope: str
    exists: bool
    min_runners: int | None
    max_runners: int | None
    current: int
    desired: int
    phases: dict[str, int]
    runners: list[Runner]


class Pool(BaseModel):
    name: str
    kind: str
    scope: str
    min_runners: int
    max_runners: int
    image: str
    runner_group: str | None
    paused: bool


class Fleet(BaseModel):
    mode: str
    pools: Sourced[list[Pool]]
    scale_sets: Sourced[list[ScaleSet]]


class PoolEdit(Request):
    """The pool settings the form may change; absent fields stay as they are."""

    min_runners: int | None = Field(default=None, ge=0, le=10_000)
    max_runners: int | None = Field(default=None, ge=0, le=10_000)
    image: str | None = Field(default=None, min_length=1, max_length=255,
                              pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")
    runner_group: str | None = Field(default=None, min_length=1, max_length=100,
                                     pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")


class Preview(BaseModel):
    source: str
    diff: str


class Change(BaseModel):
    id: int
    kind: str
    pool: str
    forge: str
    number: int | None
    url: str | None
    branch: str | None
    title: str
    diff: str
    author: str
    created_at: int


class ChangeList(BaseModel):
    changes: list[Change]


class Check(BaseModel):
    name: str
    status: str
    conclusion: str | None
    url: str | None


class ChangeLive(BaseModel):
    state: str
    mergeable: bool | None
    checks: list[Check]


class ChangeDetail(BaseModel):
    change: Change
    live: Sourced[ChangeLive]


class Drift(BaseModel):
    lines: list[str]
    summary: str


class Remedy(BaseModel):
    message: str
    affected: list[str]


class TrafficPoint(BaseModel):
    at: int
    hits: int
    misses: int
    bytes_out: int


class PusherFigures(BaseModel):
    pusher: str
    uploads: int
    bytes_in: int


class CacheDetail(BaseModel):
    source: str
    figures: CacheFigures
    series: list[TrafficPoint]
    pushers: list[PusherFigures]
    nix_conf: list[str]
    bazelrc: list[str]


class CacheFiguresList(BaseModel):
    source: str
    caches: list[CacheFigures]


class Inspected(BaseModel):
    query: str
    kind: str
    found: bool
    narinfo: str | None
    action_result: bool
    cas_blob_size: int | None


class AuditEvent(BaseModel):
    id: int
    at_ms: int
    actor: str
    via: str
    role: str | None
    action: str
    target: str
    detail: dict[str, Any]
    address: str
    outcome: str


class AuditPage(BaseModel):
    events: list[AuditEvent]
    next_before: int | None


class SessionInfo(BaseModel):
    id: str
    source: str
    created_at: int
    expires_at: int
    last_seen_at: int
    address: str
    user_agent: str
    current: bool


class SessionList(BaseModel):
    sessions: list[SessionInfo]


class WhoAmI(BaseModel):
    identity: str | None
    display: str | None
    via: str
    role: str | None
    token_id: str | None
    session: SessionInfo | None


class PasskeyInfo(BaseModel):
    id: str
    name: str
    created_at: int
    last_used_at: int | None


class PasskeyList(BaseModel):
    passkeys: list[PasskeyInfo]


class PasskeyRegistration(Request):
    credential: dict[str, Any]
    name: str = Field(min_length=1, max_length=100)


class PasskeyRename(Request):
    name: str = Field(min_length=1, max_length=100)


class PasskeyLogin(Request):
    credential: dict[str, Any]


class SignedIn(BaseModel):
    identity: str
    display: str
    via: str


class Delivery(BaseModel):
    stored: bool
    job_id: int | None
    pool: str | None

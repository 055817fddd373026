"""The fleet spec (``fleet.yaml``) as pydantic models: shapes and single-field rules only.

Rules that relate fields to each other (maxRunners ≥ minRunners, unique names, enrollments
naming a pool) live in :mod:`flywheel.fleet.rules`, so every error can name its own field.
Keys are camelCase, as in the Kubernetes objects they become."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

CACHE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,49}")
# Kubernetes object names (RFC 1123 labels); the chart refuses scale-set names over 45.
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
SCALE_SET_NAME_MAX = 45
GITHUB_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,99})")
SCOPE = re.compile(r"https://github\.com/(?P<owner>[A-Za-z0-9][A-Za-z0-9-]*)"
                   r"(?:/(?P<repo>[A-Za-z0-9._-]+))?")
DEFAULT_CONTROLLER_VERSION = "0.14.2"
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)   # any instant: cron syntax is checked by parsing


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True,
                              frozen=True)


def _dns_label(value: str) -> str:
    if len(value) > 63 or not DNS_LABEL.fullmatch(value):
        raise ValueError("must be lower-case letters, digits and '-', starting and ending with "
                         "a letter or digit, at most 63 characters")
    return value


def _cache_name(value: str) -> str:
    if not CACHE_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a cache name ([a-z0-9][a-z0-9._-]{{0,49}})")
    return value


def _scope(value: str) -> str:
    value = value.rstrip("/")
    if not SCOPE.fullmatch(value):
        raise ValueError("must be https://github.com/ORG or https://github.com/OWNER/REPO")
    return value


def _cron(value: str) -> str:
    if len(value.split()) != 5:
        raise ValueError(f"{value!r} is not a cron expression (minute hour day month weekday)")
    try:
        CronSim(value, _EPOCH)
    except CronSimError as e:
        raise ValueError(f"{value!r} is not a cron expression: {e}") from None
    return value


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Berlin)"
                         ) from None
    return value


def _http_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", value):
        raise ValueError("must be an http:// or https:// URL without query or fragment")
    return value.rstrip("/")


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
CacheName = Annotated[str, AfterValidator(_cache_name)]
Scope = Annotated[str, AfterValidator(_scope)]
Cron = Annotated[str, AfterValidator(_cron)]
TimeZone = Annotated[str, AfterValidator(_time_zone)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
Runners = Annotated[int, Field(ge=0, le=10_000)]
# Kubernetes quantities: YAML reads `cpu: 2` as a number, Kubernetes wants the string.
Quantity = Annotated[str, BeforeValidator(
    lambda v: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v)]

class GitHubApp(Model):
    """A GitHub App by reference: its (public) id, and the Secret name that holds
    ``github_app_id``, ``github_app_installation_id`` and ``github_app_private_key`` in
    each scale set's namespace. The private key never appears here."""

    id: Annotated[int, Field(gt=0)]
    secret: DnsLabel = "github-app"


class GitHubPat(Model):
    """A personal access token by reference: a Secret with ``github_token``."""

    secret: DnsLabel = "github-pat"


class GitHub(Model):
    app: GitHubApp | None = None
    pat: GitHubPat | None = None


class CacheServer(Model):
    """The cache server once: where runners reach it, and pinned public keys (optional;
    otherwise read from the server when rendering)."""

    url: HttpUrl
    public_keys: dict[CacheName, str] = Field(default_factory=dict)


class PoolCache(Model):
    nix: CacheName | None = None
    bazel: CacheName | None = None
    # A Secret in the pool's namespace whose key ``token`` holds a flywheel token.
    token_secret: DnsLabel | None = None


AccessMode = Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"]
READ_WRITE_ONCE: AccessMode = "ReadWriteOnce"


class WorkVolumeClaim(Model):
    storage_class_name: str
    size: Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")]
    access_modes: list[AccessMode] = Field(default_factory=lambda: [READ_WRITE_ONCE])


class Dind(Model):
    image: str = "docker:dind"
    # Docker's bridge MTU must not exceed the pod network's (ARC #3691); address pools keep
    # job networks off the cluster's CIDRs (ARC #1652).
    mtu: Annotated[int, Field(ge=576, le=9216)] | None = None
    default_address_pools: list[Annotated[str, Field(
        pattern=r"^base=\d+\.\d+\.\d+\.\d+/\d+,size=\d+$")]] = Field(default_factory=list)


class ContainerMode(Model):
    type: Literal["dind", "kubernetes"]
    work_volume_claim: WorkVolumeClaim | None = None


class Schedule(Model):
    """While a window is open (its last ``start`` came after its last ``end``), the pool
    keeps ``minRunners`` idle runners instead of its own."""

    name: DnsLabel
    start: Cron
    end: Cron
    time_zone: TimeZone = "UTC"
    min_runners: Runners


class Resources(Model):
    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)


PoolKind = Literal["nix", "docker", "dind", "custom"]


class Pool(Model):
    name: DnsLabel
    kind: PoolKind
    scope: Scope
    namespace: DnsLabel | None = None
    runner_group: str | None = None
    min_runners: Runners = 0
    max_runners: Runners
    container_mode: ContainerMode | None = None
    image: str = "ghcr.io/actions/actions-runner:latest"
    dind: Dind | None = None
    resources: Resources | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    cache: PoolCache | None = None
    schedules: list[Schedule] = Field(default_factory=list)


class Enrollment(Model):
    """Another org or repo served by a pool: the pool's settings, its own scope and Secret."""

    org: Annotated[str, Field(pattern=rf"^{GITHUB_NAME.pattern}$")] | None = None
    repo: Annotated[str, Field(pattern=rf"^{GITHUB_NAME.pattern}/{GITHUB_NAME.pattern}$")] | None \
        = None
    pool: DnsLabel
    installation_id: Annotated[int, Field(gt=0)] | None = None
    # The Kubernetes name of its scale set; by default "<pool>-<org>" or "<pool>-<owner>-<repo>".
    name: DnsLabel | None = None
    runner_group: str | None = None


class Controller(Model):
    """The ARC controller: its service account gets the per-scale-set manager role, and its
    version must be on every scale set (it deletes sets labelled with another version)."""

    service_account: DnsLabel = "arc-gha-rs-controller"
    namespace: DnsLabel = "arc-systems"
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = DEFAULT_CONTROLLER_VERSION


class Fleet(Model):
    # Labels every object, so apply --prune only ever touches this fleet's objects.
    name: DnsLabel
    namespace: DnsLabel = "arc-runners"
    kubernetes_version: Annotated[str, Field(pattern=r"^1\.\d+$")] = "1.31"
    controller: Controller = Field(default_factory=Controller)
    github: GitHub
    cache_server: CacheServer | None = None
    pools: list[Pool]
    enrollments: list[Enrollment] = Field(default_factory=list)

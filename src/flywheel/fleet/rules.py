"""Rules across fields of a parsed fleet spec; each broken one is reported at the field that
has to change."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from flywheel.fleet.scalesets import Path, scale_sets
from flywheel.fleet.spec import SCALE_SET_NAME_MAX, Fleet, Pool

# The container mode each kind of pool needs; None: no container mode.
KIND_MODES = {"nix": None, "docker": "kubernetes", "dind": "dind"}


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str


def container_mode_type(pool: Pool) -> str | None:
    if pool.container_mode is not None:
        return pool.container_mode.type
    return KIND_MODES.get(pool.kind)


def _pool_problems(fleet: Fleet, i: int, pool: Pool) -> list[Problem]:
    at: Path = ("pools", i)
    found = []
    if pool.max_runners < pool.min_runners:
        found.append(Problem((*at, "maxRunners"),
                             f"must be ≥ minRunners ({pool.min_runners})"))
    for k, s in enumerate(pool.schedules):
        if s.min_runners > pool.max_runners:
            found.append(Problem((*at, "schedules", k, "minRunners"),
                                 f"must be ≤ the pool's maxRunners ({pool.max_runners})"))
    names = [s.name for s in pool.schedules]
    for k, name in enumerate(names):
        if name in names[:k]:
            found.append(Problem((*at, "schedules", k, "name"), f"duplicate schedule {name!r}"))
    mode = container_mode_type(pool)
    wanted = KIND_MODES.get(pool.kind, mode)
    if mode != wanted:
        found.append(Problem((*at, "containerMode", "type"),
                             f"a {pool.kind} pool needs "
                             f"{'no container mode' if wanted is None else wanted}"))
    cm = pool.container_mode
    if mode == "kubernetes" and (cm is None or cm.work_volume_claim is None):
        found.append(Problem((*at, "containerMode", "workVolumeClaim"),
                             "required for kubernetes mode (the job containers' work volume)"))
    if mode != "kubernetes" and cm is not None and cm.work_volume_claim is not None:
        found.append(Problem((*at, "containerMode", "workVolumeClaim"),
                             "only used in kubernetes mode"))
    if pool.dind is not None and mode != "dind":
        found.append(Problem((*at, "dind"), "only used by dind pools"))
    if pool.cache is not None:
        if fleet.cache_server is None:
            found.append(Problem((*at, "cache"), "needs cacheServer (where the caches are)"))
        if pool.cache.nix is None and pool.cache.bazel is None:
            found.append(Problem((*at, "cache"), "name a nix cache, a bazel cache, or both"))
    return found


def _github_problems(fleet: Fleet) -> list[Problem]:
    if (fleet.github.app is None) == (fleet.github.pat is None):
        return [Problem(("github",), "give exactly one of app (a GitHub App) or pat")]
    return []


def _enrollment_problems(fleet: Fleet) -> list[Problem]:
    found = []
    pools = [p.name for p in fleet.pools]
    for i, e in enumerate(fleet.enrollments):
        at: Path = ("enrollments", i)
        if (e.org is None) == (e.repo is None):
            found.append(Problem(at, "give exactly one of org or repo"))
        if e.pool not in pools:
            found.append(Problem((*at, "pool"),
                                 f"no pool named {e.pool!r} (pools: {', '.join(pools)})"))
        if e.installation_id is not None and fleet.github.app is None:
            found.append(Problem((*at, "installationId"), "only for a GitHub App"))
    return found


def _scale_set_problems(fleet: Fleet) -> list[Problem]:
    found = []
    by_key: dict[tuple[str, str], list[Path]] = defaultdict(list)
    by_github: dict[tuple[str, str, str], list[Path]] = defaultdict(list)
    for s in scale_sets(fleet):
        by_key[s.key].append(s.source)
        by_github[(s.scope.lower(), s.runner_group or "default", s.runs_on)].append(s.source)
        if len(s.name) > SCALE_SET_NAME_MAX:
            found.append(Problem((*s.source, "name"),
                                 f"scale set name {s.name!r} is longer than "
                                 f"{SCALE_SET_NAME_MAX} characters; give a shorter name"))

    def where(path: Path) -> str:
        return f"{path[0]}[{path[1]}]"

    for (namespace, name), sources in by_key.items():
        for later in sources[1:]:
            found.append(Problem((*later, "name"),
                                 f"scale set {name!r} in namespace {namespace!r} is already "
                                 f"made by {where(sources[0])}; give this one another name"))
    for (scope, group, runs_on), sources in by_github.items():
        for later in sources[1:]:
            found.append(Problem(later, f"{scope} already has a scale set {runs_on!r} in runner "
                                        f"group {group!r} (from {where(sources[0])})"))
    return found


def problems(fleet: Fleet) -> list[Problem]:
    found = _github_problems(fleet)
    names = [p.name for p in fleet.pools]
    for i, pool in enumerate(fleet.pools):
        if pool.name in names[:i]:
            found.append(Problem(("pools", i, "name"), f"duplicate pool name {pool.name!r}"))
        found += _pool_problems(fleet, i, pool)
    found += _enrollment_problems(fleet)
    if not found:
        found += _scale_set_problems(fleet)
    return found

"""Scale sets: every pool, and every enrollment resolved against its pool, as the flat
records the renderer and the cluster commands work on."""

from __future__ import annotations

from dataclasses import dataclass

from flywheel.fleet.spec import Enrollment, Fleet, Pool

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class ScaleSet:
    name: str               # the AutoscalingRunnerSet's Kubernetes name
    runs_on: str            # its GitHub-side scale-set name: the `runs-on` label (the pool's name)
    namespace: str
    scope: str              # githubConfigUrl
    github_secret: str
    runner_group: str | None
    pool: Pool
    source: Path            # where the spec defines it: ("pools", i) or ("enrollments", i)

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name


def enrollment_scope(e: Enrollment) -> str:
    return f"https://github.com/{e.org or e.repo}"


def enrollment_owner(e: Enrollment) -> str:
    owner = e.org or (e.repo or "").split("/")[0]
    return owner


def default_enrollment_name(e: Enrollment) -> str:
    target = e.org or (e.repo or "").replace("/", "-")
    return f"{e.pool}-{target}".lower().replace("_", "-").replace(".", "-")


def github_secret(fleet: Fleet, enrollment: Enrollment | None) -> str:
    """The Secret ARC reads the GitHub credentials from. An App installation is per account,
    so each enrolled owner gets its own Secret; a PAT covers every enrollment."""
    if fleet.github.app is not None:
        base = fleet.github.app.secret
        if enrollment is None:
            return base
        return f"{base}-{enrollment_owner(enrollment).lower()}"
    assert fleet.github.pat is not None
    return fleet.github.pat.secret


def scale_sets(fleet: Fleet) -> list[ScaleSet]:
    """Pools first, then enrollments, each in spec order. Enrollments naming an unknown pool
    are left out (the rules report them)."""
    pools = {p.name: p for p in fleet.pools}
    found = [ScaleSet(name=p.name, runs_on=p.name, namespace=p.namespace or fleet.namespace,
                      scope=p.scope, github_secret=github_secret(fleet, None),
                      runner_group=p.runner_group, pool=p, source=("pools", i))
             for i, p in enumerate(fleet.pools)]
    for i, e in enumerate(fleet.enrollments):
        pool = pools.get(e.pool)
        if pool is None or (e.org is None) == (e.repo is None):
            continue
        found.append(ScaleSet(name=e.name or default_enrollment_name(e), runs_on=pool.name,
                              namespace=pool.namespace or fleet.namespace,
                              scope=enrollment_scope(e),
                              github_secret=github_secret(fleet, e),
                              runner_group=e.runner_group or pool.runner_group, pool=pool,
                              source=("enrollments", i)))
    return found

"""``flywheel fleet ...``: validate, render, plan, apply, enroll, offboard, status and
reconcile a fleet spec. Thin: parse flags, call :mod:`flywheel.fleet`, print."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flywheel.fleet.apply import apply as apply_objects
from flywheel.fleet.apply import prune as prune_objects
from flywheel.fleet.crds import CRDS_ENV, CrdError, crds_directory, from_directory
from flywheel.fleet.desired import RenderError, desired, keys_for
from flywheel.fleet.enroll import EnrollError, check_secret
from flywheel.fleet.enroll import enroll as enroll_in
from flywheel.fleet.enroll import offboard as offboard_from
from flywheel.fleet.keys import caches_named
from flywheel.fleet.kube import Cluster, KubeError, Object
from flywheel.fleet.loader import LoadedSpec, SpecError, load
from flywheel.fleet.manifests import ManifestError, write
from flywheel.fleet.plan import Plan, describe
from flywheel.fleet.plan import plan as make_plan
from flywheel.fleet.reconcile import reconcile_scale_set
from flywheel.fleet.scalesets import scale_sets
from flywheel.fleet.schedule import min_runners_at
from flywheel.fleet.status import Stuck, scale_set_status
from flywheel.fleet.validate import Validator

app = typer.Typer(help="Runner fleet: one spec rendered to ARC runner scale sets.",
                  no_args_is_help=True)
# No markup: printed values hold brackets (containers[runner]) that are not styles.
out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)

SPEC_ERROR = 2      # the spec (or what it renders to) is wrong: fix the file

SpecArg = Annotated[Path, typer.Argument(help="The fleet spec", show_default=False)]
CrdsOpt = Annotated[Path | None, typer.Option(
    "--crds", help="Directory with the ARC CRDs (actions.github.com_*.yaml) [default: $ARC_CRDS]",
    show_default=False)]
ServerOpt = Annotated[str | None, typer.Option(
    "--server", help="Server profile (flywheel login) to read cache keys through "
    "[default: the spec's cacheServer.url, anonymously]", show_default=False)]
AtOpt = Annotated[str | None, typer.Option(
    "--at", help="Evaluate schedules at this ISO time instead of now", show_default=False)]


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"error: {message}", style="bold red")
    return typer.Exit(code)


@contextlib.contextmanager
def errors() -> Iterator[None]:
    try:
        yield
    except (SpecError, RenderError) as e:
        for line in e.lines:
            err.print(line)
        raise typer.Exit(SPEC_ERROR) from None
    except (CrdError, ManifestError) as e:
        raise fail(str(e), SPEC_ERROR) from None


def parse_at(at: str | None) -> datetime | None:
    if at is None:
        return None
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        raise fail(f"--at {at!r} is not an ISO date and time (2025-03-03T08:00+01:00)", 2
                   ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def server_profile(name: str | None) -> tuple[str | None, str | None]:
    """URL and token of a `flywheel login` profile, or (None, None) without one."""
    if name is None:
        return None, None
    from flywheel.client import profiles
    from flywheel.client.errors import ClientError

    try:
        profile = profiles.load(profiles.config_path()).select(name)
    except ClientError as e:
        raise fail(str(e)) from None
    return profile.url, profile.token


def offline_validator(spec: LoadedSpec, crds: Path | None) -> Validator:
    return Validator(from_directory(crds_directory(crds)), spec.fleet.kubernetes_version)


@app.command()
def validate(file: SpecArg, crds: CrdsOpt = None) -> None:
    """Check the spec (exit 0, or 2 with FILE:LINE: FIELD: MESSAGE per problem); with CRDs,
    also every object it renders. Offline: unpinned cache keys are not looked up."""
    with errors():
        spec = load(file)
        objects = 0
        if crds is not None or os.environ.get(CRDS_ENV):
            # Keys only fill NIX_CONFIG, which no schema constrains: a stand-in will do.
            keys = dict.fromkeys(caches_named(spec.fleet), "unchecked:offline")
            if spec.fleet.cache_server is not None:
                keys.update(spec.fleet.cache_server.public_keys)
            objects = len(desired(spec, keys, offline_validator(spec, crds)))
    checked = f"; its {counted(objects, 'object')} are valid" if objects else ""
    out.print(f"{file}: valid ({counted(len(spec.fleet.pools), 'pool')}, "
              f"{counted(len(spec.fleet.enrollments), 'enrollment')}){checked}")


@app.command()
def render(
    file: SpecArg,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write (replaced whole)")],
    crds: CrdsOpt = None, server: ServerOpt = None, at: AtOpt = None,
) -> None:
    """Write the Kubernetes objects of every scale set, one file each, after validating all
    of them (nothing is written if any is invalid)."""
    when = parse_at(at)
    url, token = server_profile(server)
    with errors():
        spec = load(file)
        validator = offline_validator(spec, crds)
        objects = desired(spec, keys_for(spec, server_url=url, token=token), validator, when)
        written = write(objects, out_dir)
    for path in written:
        out.print(f"wrote {path}")
    out.print(f"{counted(len(written), 'object')} for {counted(len(spec.fleet.pools), 'pool')}"
              f" and {counted(len(spec.fleet.enrollments), 'enrollment')} in {out_dir}")


KubeconfigOpt = Annotated[Path | None, typer.Option(
    "--kubeconfig", help="[default: $KUBECONFIG, ~/.kube/config, else the pod's service account]",
    show_default=False)]
ContextOpt = Annotated[str | None, typer.Option("--context", help="kubeconfig context",
                                                show_default=False)]
ForceOpt = Annotated[bool, typer.Option(
    "--force-conflicts", help="Take over fields another field manager owns")]


@contextlib.contextmanager
def cluster_of(kubeconfig: Path | None, context: str | None) -> Iterator[Cluster]:
    try:
        cluster = Cluster.connect(kubeconfig, context)
    except KubeError as e:
        raise fail(str(e)) from None
    try:
        yield cluster
    except KubeError as e:
        raise fail(str(e)) from None
    finally:
        cluster.close()


def _desired_for(cluster: Cluster, spec: LoadedSpec, crds: Path | None, server: str | None,
                 at: datetime) -> list[Object]:
    """The spec's objects, validated against the CRDs the cluster serves (or --crds)."""
    url, token = server_profile(server)
    cluster.check_arc()
    schemas = from_directory(crds) if crds is not None else cluster.crds()
    validator = Validator(schemas, spec.fleet.kubernetes_version)
    return desired(spec, keys_for(spec, server_url=url, token=token), validator, at)


def _show(result: Plan) -> None:
    for step in result.steps:
        if step.action != "unchanged":
            for line in describe(step):
                out.print(line)
    for namespace in result.unused_namespaces:
        out.print(f"Namespace {namespace}: no longer used by this fleet; it is kept (it may "
                  f"hold your Secrets): kubectl delete namespace {namespace}")


def _planned(cluster: Cluster, file: Path, crds: Path | None, server: str | None,
             at: str | None, force: bool) -> tuple[list[Object], Plan]:
    """The spec's objects and the plan for them, shown."""
    spec = load(file)
    objects = _desired_for(cluster, spec, crds, server, parse_at(at) or datetime.now(UTC))
    result = make_plan(cluster, spec.fleet.name, objects, force=force)
    _show(result)
    return objects, result


@app.command()
def plan(file: SpecArg, kubeconfig: KubeconfigOpt = None, context: ContextOpt = None,
         crds: CrdsOpt = None, server: ServerOpt = None, at: AtOpt = None,
         force_conflicts: ForceOpt = False) -> None:
    """Show what apply would do, per object: create, change (with the fields), delete."""
    with errors(), cluster_of(kubeconfig, context) as cluster:
        _, result = _planned(cluster, file, crds, server, at, force_conflicts)
        out.print(f"Plan: {result.summary()}")


@app.command()
def apply(file: SpecArg, kubeconfig: KubeconfigOpt = None, context: ContextOpt = None,
          crds: CrdsOpt = None, server: ServerOpt = None, at: AtOpt = None,
          prune: Annotated[bool, typer.Option(
              "--prune", help="Also delete what this fleet made that the spec no longer "
              "names")] = False,
          force_conflicts: ForceOpt = False) -> None:
    """Apply the spec with server-side apply; shows the plan first. Idempotent."""
    with errors(), cluster_of(kubeconfig, context) as cluster:
        objects, result = _planned(cluster, file, crds, server, at, force_conflicts)
        applied = apply_objects(cluster, result, objects, force=force_conflicts)
        counts = Counter(a.action for a in applied)
        deleted = prune_objects(cluster, result) if prune else []
        for d in deleted:
            waiting = f" (waiting for finalizers: {', '.join(d.waiting_for)})" \
                if d.waiting_for else ""
            out.print(f"deleted {d.ref}{waiting}")
        if result.deletions and not prune:
            out.print(f"{len(result.deletions)} objects are no longer in the spec and were "
                      "kept; apply --prune deletes them")
        if not counts["created"] and not counts["changed"] and not deleted:
            out.print(f"No changes: the cluster matches {file} "
                      f"({counts['unchanged']} objects unchanged)")
        else:
            out.print(f"Applied: {counts['created']} created, {counts['changed']} changed, "
                      f"{counts['unchanged']} unchanged, {len(deleted)} deleted")


def _duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        return timedelta(seconds=float(text[:-1]) * units[text[-1]])
    except (KeyError, ValueError, IndexError):
        raise fail(f"{text!r} is not a duration (90s, 10m, 1h)", 2) from None


@app.command()
def status(file: SpecArg, kubeconfig: KubeconfigOpt = None, context: ContextOpt = None,
           pending_threshold: Annotated[str, typer.Option(
               help="Flag runners Pending longer than this")] = "10m",
           at: AtOpt = None) -> None:
    """Per scale set: runners current/desired, ephemeral runners by phase, stuck ones."""
    limit = _duration(pending_threshold)
    when = parse_at(at) or datetime.now(UTC)
    with errors(), cluster_of(kubeconfig, context) as cluster:
        spec = load(file)
        cluster.check_arc()
        table = Table("scale set", "namespace", "runs-on", "min", "max", "current", "desired",
                      "runners by phase", "schedule")
        stuck: list[tuple[str, Stuck]] = []
        for s in scale_sets(spec.fleet):
            found = scale_set_status(cluster, s, when, limit)
            scheduled = min_runners_at(s.pool, when)
            window = f"{scheduled.window}: min {scheduled.min_runners}" if scheduled.window \
                else f"min {scheduled.min_runners}"
            if found.exists and found.min_runners != scheduled.min_runners:
                window += " (reconcile will set it)"
            if not found.exists:
                table.add_row(s.name, s.namespace, s.runs_on, "-", "-", "-", "-",
                              "not applied", window)
                continue
            phases = ", ".join(f"{n} {p}" for p, n in sorted(found.phases.items())) or "none"
            table.add_row(s.name, s.namespace, s.runs_on, str(found.min_runners),
                          str(found.max_runners), str(found.current), str(found.desired),
                          phases, window)
            stuck += [(f"{s.namespace}/{s.name}", x) for x in found.stuck]
        out.print(table)
        for where, x in stuck:
            out.print(f"stuck: {where} runner {x.runner} ({x.phase}): {x.reason}",
                      style="bold red")
        if not stuck:
            out.print("No stuck runners.")


@app.command()
def reconcile(file: SpecArg, kubeconfig: KubeconfigOpt = None, context: ContextOpt = None,
              watch: Annotated[bool, typer.Option(
                  "--watch", help="Keep following the schedules, once a minute")] = False,
              at: AtOpt = None, force_conflicts: ForceOpt = False) -> None:
    """Set each scale set's minRunners to what its schedules say now (one-shot, e.g. from a
    CronJob, or --watch)."""
    fixed_at = parse_at(at)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with errors(), cluster_of(kubeconfig, context) as cluster:
        spec = load(file)
        cluster.check_arc()
        while True:
            when = fixed_at or datetime.now(UTC)
            for s in scale_sets(spec.fleet):
                a = reconcile_scale_set(cluster, s, when, force_conflicts)
                why = f"schedule {a.window}" if a.window else "no schedule window open"
                if a.before is None:
                    out.print(f"{s.namespace}/{s.name}: not in the cluster yet (flywheel fleet "
                              "apply creates it)")
                elif a.changed:
                    out.print(f"{s.namespace}/{s.name}: minRunners {a.before} → {a.after} "
                              f"({why})")
                else:
                    out.print(f"{s.namespace}/{s.name}: minRunners {a.after} ({why}), "
                              "unchanged")
            if not watch or stop.wait(60 - datetime.now(UTC).second):
                break


FileOpt = Annotated[Path, typer.Option("--file", "-f", help="The fleet spec to edit")]
OrgOpt = Annotated[str | None, typer.Option("--org", help="A GitHub organization",
                                            show_default=False)]
RepoOpt = Annotated[str | None, typer.Option("--repo", help="A repository, OWNER/REPO",
                                             show_default=False)]


@app.command()
def enroll(
    pool: Annotated[str, typer.Option("--pool", help="The pool whose settings it gets")],
    org: OrgOpt = None, repo: RepoOpt = None,
    installation_id: Annotated[int | None, typer.Option(
        "--installation-id", help="The GitHub App's installation id there", show_default=False
    )] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Kubernetes name of its scale set [default: POOL-ORG]",
        show_default=False)] = None,
    file: FileOpt = Path("fleet.yaml"), kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Add an org or repo to a pool in the spec (comments kept), print the one-time steps
    outside, and check its GitHub Secret in the cluster."""
    with errors():
        try:
            edit = enroll_in(file, org=org, repo=repo, pool=pool,
                             installation_id=installation_id, name=name)
        except EnrollError as e:
            raise fail(str(e)) from None
    s = edit.scale_set
    out.print(f"Enrolled {s.scope} in pool {s.runs_on}: scale set {s.namespace}/{s.name} "
              f"(runs-on: {s.runs_on}), in {file}")
    for i, step in enumerate(edit.steps, 1):
        out.print(f"{i}. {step}")
    try:
        with contextlib.closing(Cluster.connect(kubeconfig, context)) as cluster:
            ready, what = check_secret(cluster, edit.spec.fleet, s, installation_id)
    except KubeError as e:
        ready, what = False, f"could not check Secret {s.namespace}/{s.github_secret}: {e}"
    out.print(f"check: {what}", style=None if ready else "yellow")


@app.command()
def offboard(
    org: OrgOpt = None, repo: RepoOpt = None,
    pool: Annotated[str | None, typer.Option(
        "--pool", help="Which pool, when it is enrolled in several", show_default=False)] = None,
    file: FileOpt = Path("fleet.yaml"),
) -> None:
    """Remove an org's or repo's enrollment from the spec (comments kept)."""
    with errors():
        try:
            edit = offboard_from(file, org=org, repo=repo, pool=pool)
        except EnrollError as e:
            raise fail(str(e)) from None
    s = edit.scale_set
    out.print(f"Removed the enrollment of {s.scope} in pool {s.runs_on} from {file}")
    for i, step in enumerate(edit.steps, 1):
        out.print(f"{i}. {step}")

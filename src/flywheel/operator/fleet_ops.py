"""The fleet as the operator plane works on it: the spec from its source, the live cluster,
the changes (GitOps or direct), drift between the two, and remedies for stuck runners.
Blocking throughout: the web layer runs these on its thread pool."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flywheel.cache.tenancy import CacheService
from flywheel.errors import Conflict, FailedPrecondition, Invalid
from flywheel.fleet.apply import apply as apply_objects
from flywheel.fleet.desired import RenderError, desired
from flywheel.fleet.keys import caches_named
from flywheel.fleet.kube import Cluster, Object
from flywheel.fleet.plan import Plan, describe
from flywheel.fleet.plan import plan as make_plan
from flywheel.fleet.validate import Validator
from flywheel.operator import fleet_view, pool_edits
from flywheel.operator.changes import Change, ChangeLog, follow, propose, write_local
from flywheel.operator.fleet_view import ScaleSetView
from flywheel.operator.forges.base import ChangeState, Forge
from flywheel.operator.pool_edits import Edited, PoolSettings
from flywheel.operator.spec_source import LocalSpec, SpecSource, SpecText


@dataclass(frozen=True)
class Drift:
    scale_sets: list[str]      # "create", "change" or "delete" lines, as plan shows them
    summary: str


class FleetOps:
    def __init__(self, *, source: SpecSource | None, forge: Forge | None, mode: str,
                 base_branch: str, kubeconfig: Path | None, context: str | None,
                 pending_limit: int, caches: CacheService, log: ChangeLog) -> None:
        self.source = source
        self.forge = forge
        self.mode = mode
        self._base = base_branch
        self._kubeconfig = kubeconfig
        self._context = context
        self.pending_limit = pending_limit
        self._caches = caches
        self.log = log

    # -- sources --

    def describe_spec(self) -> str:
        return self.source.describe() if self.source else "the fleet spec (not configured)"

    def spec(self) -> SpecText:
        if self.source is None:
            raise FailedPrecondition(
                "no fleet spec is configured: set [forge] repository (GitOps) or [ui] "
                "fleet-spec with changes = \"direct\"")
        return self.source.read()

    def describe_cluster(self) -> str:
        where = str(self._kubeconfig) if self._kubeconfig else "$KUBECONFIG / in-cluster"
        return f"Kubernetes API ({where}{', context ' + self._context if self._context else ''})"

    @contextlib.contextmanager
    def cluster(self) -> Iterator[Cluster]:
        cluster = Cluster.connect(self._kubeconfig, self._context)
        try:
            yield cluster
        finally:
            cluster.close()

    # -- reading --

    def view(self) -> list[ScaleSetView]:
        fleet = self.spec().load().fleet
        with self.cluster() as cluster:
            return fleet_view.fleet_view(cluster, fleet, datetime.now(UTC), self.pending_limit)

    def _objects(self, cluster: Cluster, spec: SpecText) -> list[Object]:
        loaded = spec.load()
        # Keys the spec pins win, as in `flywheel fleet render`; the rest are this server's.
        pinned = loaded.fleet.cache_server.public_keys if loaded.fleet.cache_server else {}
        keys = {}
        for name in caches_named(loaded.fleet):
            if name in pinned:
                keys[name] = pinned[name]
                continue
            cache = self._caches.find(name)
            if cache is None:
                raise Invalid(f"the fleet spec names cache {name!r}, which this server "
                              "does not have")
            keys[name] = cache.public_key
        cluster.check_arc()
        validator = Validator(cluster.crds(), loaded.fleet.kubernetes_version)
        try:
            return desired(loaded, keys, validator, datetime.now(UTC))
        except RenderError as e:
            raise Invalid("; ".join(e.lines)) from None

    def drift(self) -> Drift:
        spec = self.spec()
        with self.cluster() as cluster:
            found: Plan = make_plan(cluster, spec.load().fleet.name,
                                    self._objects(cluster, spec))
        lines = [line for step in found.steps if step.action != "unchanged"
                 for line in describe(step)]
        return Drift(lines, found.summary())

    # -- changes --

    def preview(self, kind: str, pool: str, settings: PoolSettings | None = None
                ) -> tuple[SpecText, Edited]:
        spec = self.spec()
        if kind == "pause":
            edited = pool_edits.pause(spec.path, spec.text, pool)
        elif kind == "resume":
            edited = pool_edits.resume(spec.path, spec.text, pool)
        else:
            edited = pool_edits.edit(spec.path, spec.text, pool, settings or PoolSettings())
        return spec, edited

    def submit(self, kind: str, pool: str, author: str,
               settings: PoolSettings | None = None) -> Change:
        spec, edited = self.preview(kind, pool, settings)
        title = {"pause": f"Pause pool {pool}", "resume": f"Resume pool {pool}"}.get(
            kind, f"Change pool {pool}")
        if self.mode == "gitops":
            if self.forge is None:
                raise FailedPrecondition("changes = \"gitops\" needs a [forge]")
            return propose(self.forge, spec, edited, base=self._base, kind=kind, pool=pool,
                           title=title, author=author, log=self.log)
        assert isinstance(self.source, LocalSpec)
        with self.cluster() as cluster:
            # Rendered and validated before the file is touched: a change the cluster
            # would refuse is not written either.
            after = SpecText(edited.text, "", spec.source, spec.path)
            objects = self._objects(cluster, after)
            planned = make_plan(cluster, after.load().fleet.name, objects)
            if planned.conflicts:
                raise Conflict(
                    "fields of " + ", ".join(str(s.ref) for s in planned.conflicts)
                    + " are owned by another field manager; nothing was changed (take them "
                    "back with flywheel fleet apply --force-conflicts, or change it by GitOps)")
            write_local(self.source, spec, edited)
            apply_objects(cluster, planned, objects)
        return self.log.record(kind=kind, pool=pool, forge="direct", number=None, url=None,
                               branch=None, title=title, diff=edited.diff, author=author)

    def follow(self, change: Change) -> ChangeState:
        return follow(self.forge, change)

    # -- remedies --

    def delete_runner(self, namespace: str, name: str) -> str:
        fleet = self.spec().load().fleet
        with self.cluster() as cluster:
            return fleet_view.delete_runner(cluster, fleet, namespace, name)

    def restart_listener(self, namespace: str, name: str) -> list[str]:
        fleet = self.spec().load().fleet
        with self.cluster() as cluster:
            return fleet_view.restart_listener(cluster, fleet, namespace, name)


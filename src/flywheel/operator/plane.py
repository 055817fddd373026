"""The operator plane put together from the settings: forge, fleet spec source, cluster,
passkeys, audit, queue times and cache figures; and the overview across them."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from flywheel.app.settings import ForgeSettings, Settings
from flywheel.auth.passkeys import PasskeyService
from flywheel.db.engine import Database
from flywheel.errors import FlywheelError
from flywheel.operator.audit import AuditLog
from flywheel.operator.caches_view import CachesView
from flywheel.operator.changes import ChangeLog
from flywheel.operator.fleet_ops import FleetOps
from flywheel.operator.forges.base import Forge
from flywheel.operator.jobs import JobStore
from flywheel.operator.overview import Alert, Overview, alerts, pool_runners, queue_windows
from flywheel.operator.sourced import Sourced, fetch
from flywheel.operator.spec_source import ForgeSpec, LocalSpec, SpecSource
from flywheel.operator.webhooks import WebhookReceiver

if TYPE_CHECKING:
    from flywheel.app.services import Services

log = logging.getLogger(__name__)
DATABASE = "the metadata database"


def _secret_file(path: Path | None) -> str | None:
    return path.read_text().strip() if path is not None else None


def make_forge(settings: ForgeSettings) -> Forge | None:
    """The configured forge, or None without a repository."""
    if settings.repository is None:
        return None
    token = _secret_file(settings.token_file)
    if settings.kind == "gitlab":
        from flywheel.operator.forges.gitlab import GitLabForge

        return GitLabForge(settings.repository, url=settings.url, token=token)
    from flywheel.operator.forges.github import GitHubForge

    return GitHubForge(settings.repository, url=settings.url, token=token,
                       app_id=settings.app_id, app_key=_secret_file(settings.app_key_file),
                       installation_id=settings.installation_id)


def passkey_rp_id(settings: Settings) -> str | None:
    """The WebAuthn relying party: configured, or the public URL's host when it is a name."""
    if settings.auth.passkey_rp_id:
        return settings.auth.passkey_rp_id
    host = urlsplit(settings.base_url).hostname or ""
    if not host or host.replace(".", "").isdigit() or ":" in host:
        return None
    return host


def _spec_source(settings: Settings, forge: Forge | None) -> SpecSource | None:
    if settings.ui.changes == "direct":
        return LocalSpec(settings.ui.fleet_spec) if settings.ui.fleet_spec else None
    if forge is None:
        return None
    return ForgeSpec(forge, settings.forge.spec_path, settings.forge.branch)


@dataclass
class OperatorPlane:
    settings: Settings
    db: Database
    audit: AuditLog
    jobs: JobStore
    webhooks: WebhookReceiver
    passkeys: PasskeyService
    fleet: FleetOps
    forge: Forge | None
    caches: CachesView

    @classmethod
    def open(cls, settings: Settings, services: Services, forge: Forge | None
             ) -> OperatorPlane:
        jobs = JobStore(services.db)
        secret = _secret_file(settings.forge.webhook_secret_file)
        fleet = FleetOps(source=_spec_source(settings, forge), forge=forge,
                         mode=settings.ui.changes, base_branch=settings.forge.branch,
                         kubeconfig=settings.ui.kubeconfig, context=settings.ui.kube_context,
                         pending_limit=settings.ui.pending_threshold, caches=services.caches,
                         log=ChangeLog(services.db))
        return cls(settings=settings, db=services.db, audit=AuditLog(services.db), jobs=jobs,
                   webhooks=WebhookReceiver(secret.encode() if secret else None, jobs),
                   passkeys=PasskeyService(services.db, passkey_rp_id(settings),
                                           settings.base_url),
                   fleet=fleet, forge=forge,
                   caches=CachesView(services.db, services.caches, services.paths,
                                     services.action_cache, services.cas, services.traffic,
                                     settings.base_url))

    def lock_alerts(self, services: Services) -> list[Alert]:
        """State locks held longer than [ui] lock-alert; an unreadable backend says so."""
        source = "the state backend"
        limit, now = self.settings.ui.lock_alert, time.time()
        try:
            spaces = services.state.workspaces()
        except FlywheelError as e:
            return [Alert("state-lock", f"cannot read the state backend: {e.message}", source)]
        return [Alert("state-lock", f"workspace {w.name} is locked by {w.lock.locked_by} for "
                      f"{int((now - w.lock.locked_at) // 60)} minutes", source)
                for w in spaces if w.lock is not None and now - w.lock.locked_at > limit]

    def overview(self, services: Services) -> Overview:
        fleet = fetch(f"{self.fleet.describe_cluster()} and {self.fleet.describe_spec()}",
                      self.fleet.view)
        hour, day = queue_windows()
        source = f"GitHub workflow_job webhooks, stored in {DATABASE}"
        bound: Sourced[tuple[int, int | None]] = fetch(DATABASE, lambda: _bound(services))
        return Overview(
            pools=Sourced(fleet.source, pool_runners(fleet.value), None) if fleet.value
            is not None else Sourced(fleet.source, error=fleet.error),
            queue_hour=fetch(source, lambda: self.jobs.queue_times(hour)),
            queue_day=fetch(source, lambda: self.jobs.queue_times(day)),
            caches=fetch(DATABASE, lambda: self.caches.figures(services.caches.list())),
            bazel_bound=bound,
            alerts=alerts(fleet, bound, self.settings.ui.size_alert,
                          self.lock_alerts(services)))


def _bound(services: Services) -> tuple[int, int | None]:
    with services.db.read() as conn:
        return services.bazel_bound.usage(conn), services.bazel_bound.max_size

"""The operator plane's pieces on their own: edits of fleet.yaml, identities and roles, the
batched traffic counter, queue times from redelivered events, and GitLab merge requests
through the same forge interface as GitHub's pull requests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel.auth.identities import Identity, TrustedProxies, from_proxy
from flywheel.auth.roles import RoleMap, Roles, check_pattern
from flywheel.db.engine import Database, ensure_schema, make_engine
from flywheel.errors import Conflict, FailedPrecondition, Invalid, NotFound
from flywheel.operator import pool_edits
from flywheel.operator.changes import ChangeLog, propose
from flywheel.operator.fleet_view import ScaleSetView
from flywheel.operator.forges.base import ForgeError
from flywheel.operator.forges.gitlab import GitLabForge
from flywheel.operator.jobs import JobEvent, JobStore
from flywheel.operator.overview import Alert, alerts
from flywheel.operator.pool_edits import PoolSettings
from flywheel.operator.sourced import Sourced
from flywheel.operator.spec_source import ForgeSpec
from flywheel.operator.traffic import TrafficCounter
from tests.fleet.conftest import EXAMPLE
from tests.operator.gitlab_fake import FakeGitLab, running

SPEC = Path("fleet.yaml")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    engine = make_engine(f"sqlite:///{tmp_path / 'flywheel.db'}")
    ensure_schema(engine)
    database = Database(engine)
    yield database
    database.close()


def test_pool_edits_refuse_what_would_be_wrong() -> None:
    text = EXAMPLE.read_text()
    with pytest.raises(NotFound):
        pool_edits.pause(SPEC, text, "nope")
    with pytest.raises(Conflict, match="not paused"):
        pool_edits.resume(SPEC, text, "nix")
    paused = pool_edits.pause(SPEC, text, "nix").text
    with pytest.raises(Conflict, match="paused already"):
        pool_edits.pause(SPEC, paused, "nix")
    with pytest.raises(FailedPrecondition, match="resume it before"):
        pool_edits.edit(SPEC, paused, "nix", PoolSettings(max_runners=3))
    with pytest.raises(Invalid, match="must be ≥ minRunners"):
        pool_edits.edit(SPEC, text, "dind", PoolSettings(min_runners=4))
    with pytest.raises(Conflict, match="nothing to change"):
        pool_edits.edit(SPEC, text, "dind", PoolSettings(max_runners=3))
    added = pool_edits.edit(SPEC, text, "dind", PoolSettings(runner_group="big"))
    assert "+    runnerGroup: big\n" in added.diff
    assert pool_edits.resume(SPEC, paused, "nix").text == text
    assert "# A complete fleet" in paused      # comments kept


def test_identities_from_proxy_headers() -> None:
    named = from_proxy({"tailscale-user-login": "bob@example.com",
                        "tailscale-user-name": "=?utf-8?q?B=C3=B6b?="})
    assert named == Identity("tailnet", "bob@example.com", "Böb")
    assert from_proxy({"tailscale-user-login": "bad\x00login"}) is None
    assert from_proxy({"tailscale-user-login": "x" * 300}) is None
    chain = ('By=spiffe://a;Subject="CN=first",By=spiffe://b;Hash=1;'
             'Subject="CN=nearest,O=Acme \\"Inc\\""')
    assert from_proxy({"x-forwarded-client-cert": chain}) == Identity(
        "cert", 'CN=nearest,O=Acme "Inc"', 'CN=nearest,O=Acme "Inc"')
    proxies = TrustedProxies(["10.0.0.0/8", "127.0.0.2"])
    assert proxies.trusts("10.1.2.3") and proxies.trusts("127.0.0.2")
    assert not proxies.trusts("127.0.0.1") and not proxies.trusts("not-an-ip")


def test_roles_from_patterns_and_teams() -> None:
    asked: list[tuple[str, str, str]] = []

    def team(org: str, slug: str, login: str) -> bool:
        asked.append((org, slug, login))
        if login == "flaky":
            raise ForgeError("GitHub is down")
        return login == "octocat"

    roles = Roles(RoleMap.of(["tailnet:*@admins.example"], ["github:Hubot"],
                             ["github-team:acme/sre", "cert:CN=*,O=Acme"]), team)
    assert roles.role_for(Identity("tailnet", "a@admins.example", "a")) is not None
    assert roles.role_for(Identity("tailnet", "hubot@github", "h")).name == "OPERATOR"  # type: ignore[union-attr]
    assert roles.role_for(Identity("cert", "CN=x,O=Acme", "x")).name == "VIEWER"  # type: ignore[union-attr]
    assert roles.role_for(Identity("tailnet", "octocat@github", "o")).name == "VIEWER"  # type: ignore[union-attr]
    assert roles.role_for(Identity("tailnet", "octocat@github", "o")) is not None
    assert asked.count(("acme", "sre", "octocat")) == 1        # remembered a while
    assert roles.role_for(Identity("tailnet", "flaky@github", "f")) is None
    assert roles.role_for(Identity("tailnet", "octocat@example.com", "o")) is None
    for bad in ("alice", "email:alice", "github-team:no-slash", "tailnet:"):
        with pytest.raises(ValueError):
            check_pattern(bad)


def test_traffic_is_counted_in_memory_and_stored_in_batches(db: Database) -> None:
    now = [1_700_000_000.0]
    counter = TrafficCounter(db, clock=lambda: now[0])
    for hit in (True, True, True, False):
        counter.lookup("main", "nix", hit, 100 if hit else 0)
    counter.served("main", "nix", 5000)
    counter.pushed("main", "ci-bot", 1234)
    assert counter.totals(0) == {}             # nothing written until the flush
    counter.flush()
    now[0] += 3600
    counter.lookup("main", "ac", False)
    counter.flush()
    totals = counter.totals(0)["main"]
    assert (totals["nix"].hits, totals["nix"].misses, totals["nix"].bytes_out) == (3, 1, 5300)
    assert totals["nix"].hit_rate == 0.75 and totals["ac"].hit_rate == 0.0
    series = counter.series("main", 0, 3600)
    assert [(t.hits, t.misses) for _, t in series] == [(3, 1), (0, 1)]
    assert [(p.pusher, p.count, p.bytes_in) for p in counter.top_pushers("main", 0)] == \
        [("ci-bot", 1, 1234)]
    counter.close()


def test_alerts_for_a_bound_nearly_reached_and_stuck_runners() -> None:
    fleet: Sourced[list[ScaleSetView]] = Sourced("the cluster", [])
    found = alerts(fleet, Sourced("the database", (95, 100)), 0.9,
                   [Alert("state-lock", "workspace w is locked", "the state backend")])
    assert [(a.kind, a.message) for a in found] == [
        ("size-bound", "Bazel content uses 95 of its 100 bytes (95%)"),
        ("state-lock", "workspace w is locked")]
    assert alerts(fleet, Sourced("the database", (80, 100)), 0.9, []) == []
    assert alerts(fleet, Sourced("the database", (80, None)), 0.9, []) == []


def test_queue_times_keep_the_latest_state_whatever_the_order(db: Database) -> None:
    jobs = JobStore(db, clock=lambda: 1_700_000_100)

    def event(action: str, status: str, started: int | None) -> JobEvent:
        return JobEvent(7, action, "nix", ["nix"], "acme/web", 1, "build",
                        "nix-1" if started else None, status, None, 1_700_000_000, started,
                        None)

    jobs.record(event("in_progress", "in_progress", 1_700_000_042))
    jobs.record(event("queued", "queued", None))            # late redelivery
    [nix] = jobs.queue_times(0)
    assert (nix.jobs, nix.p50, nix.waiting) == (1, 42.0, 0)


def test_a_gitlab_merge_request_through_the_same_interface(db: Database) -> None:
    gitlab = FakeGitLab(token=secrets.token_hex(8))
    gitlab.commit("main", {"fleet.yaml": EXAMPLE.read_text()})
    with running(gitlab):
        forge = GitLabForge(gitlab.path, url=gitlab.url, token=gitlab.token)
        spec = ForgeSpec(forge, "fleet.yaml", "main").read()
        assert spec.source == "GitLab acme/platform@main:fleet.yaml"
        edited = pool_edits.pause(spec.path, spec.text, "dind")
        change = propose(forge, spec, edited, base="main", kind="pause", pool="dind",
                         title="Pause pool dind", author="tailnet:alice", log=ChangeLog(db))
        mr = gitlab.merge_requests[change.number or 0]
        assert change.url == mr["web_url"] and change.forge == "gitlab"
        assert f"```diff\n{edited.diff}```" in mr["description"]
        assert gitlab.file(mr["source_branch"], "fleet.yaml") == edited.text
        assert gitlab.file("main", "fleet.yaml") == spec.text
        mr["head_pipeline"] = {"status": "success", "web_url": "https://gitlab.example/p/1"}
        mr["state"], mr["detailed_merge_status"] = "merged", "mergeable"
        state = forge.state(mr["iid"])
        assert (state.state, state.mergeable) == ("merged", True)
        assert [(c.status, c.conclusion) for c in state.checks] == [("success", "success")]
        # A spec changed since it was read is not overwritten.
        gitlab.commit("main", {"fleet.yaml": spec.text + "\n"})
        with pytest.raises(ForgeError, match="refused"):
            propose(forge, spec, edited, base="main", kind="pause", pool="dind",
                    title="Pause pool dind", author="tailnet:alice", log=ChangeLog(db))
        with pytest.raises(ForgeError, match="401"):
            GitLabForge(gitlab.path, url=gitlab.url, token="wrong").read_file("fleet.yaml",
                                                                             "main")

"""The dashboard in a real browser (Debian's Chromium under Playwright), through the tailnet
front: sign-in by tailnet identity, a cache's hit rate moving after a real ``nix``
substitution, a token minted and revoked (and then refused by the cache), a pool paused as a
pull request, a passkey registered and then used alone, an unreachable source shown as
such. Every page is saved as a screenshot in build/test-artifacts/operator/."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.operator.conftest import ADMIN, OPERATOR, Plane, chromium_args
from tests.support.nixenv import Nix

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is required (./dev test installs it)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=chromium_args())
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Browser, plane: Plane) -> Iterator[BrowserContext]:
    plane.tailnet.login, plane.tailnet.name = ADMIN, "Alice Müller"
    ctx = browser.new_context(base_url=plane.tailnet.url, viewport={"width": 1280,
                                                                    "height": 900})
    ctx.set_default_timeout(WAIT_MS)
    yield ctx
    ctx.close()


def shot(page: Page, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


def test_sign_in_through_the_tailnet(context: BrowserContext, artifacts: Path) -> None:
    page = context.new_page()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/_ui/$"))
    expect(page.locator("header .me")).to_contain_text("Alice Müller")
    expect(page.locator("header .role")).to_have_text("admin")
    assert any(c["name"] == "flywheel_session" and c["httpOnly"] for c in context.cookies())
    expect(page.get_by_role("heading", name="Pools")).to_be_visible()
    expect(page.locator(".alerts")).to_contain_text("nix-7xk2p-failed")
    shot(page, artifacts, "overview")
    page.goto("/_ui/settings")
    expect(page.locator('[data-figure="via"]')).to_contain_text("tailnet")
    shot(page, artifacts, "settings")
    page.goto("/_ui/audit")
    expect(page.locator("table")).to_contain_text("session.begin")
    shot(page, artifacts, "audit")


def test_hit_rate_follows_a_real_nix_substitution(context: BrowserContext, plane: Plane,
                                                  tmp_path: Path, artifacts: Path) -> None:
    if shutil.which("nix") is None:
        pytest.fail("the real nix client is required (./dev test installs nix-bin)")
    pusher, substituter = Nix(tmp_path / "pusher"), Nix(tmp_path / "substituter")
    top = pusher.build_closure(tmp_path)
    pusher.copy_to(f"{plane.url}/main?compression=zstd", top,
                   netrc=pusher.netrc(plane.srv.admin_token))
    page = context.new_page()
    page.goto("/_ui/caches/main")
    figure = page.locator('[data-figure="hit-rate"]')
    before = figure.inner_text()
    key = plane.srv.public_key("main")
    substituter.copy_from(f"{plane.url}/main", tmp_path / "elsewhere", top, keys=key)
    # The page is live (server-sent events): the figure changes without a reload.
    expect(figure).not_to_have_text(before, timeout=WAIT_MS)
    assert re.match(r"\d+% \(\d+ hits, \d+ misses\)", figure.inner_text())
    hits = int(re.search(r"\((\d+) hits", figure.inner_text()).group(1))  # type: ignore[union-attr]
    assert hits >= len(pusher.closure(top))
    expect(page.locator("svg.chart rect")).not_to_have_count(0)
    page.fill('input[name="q"]', top)
    page.get_by_role("button", name="Look up").click()
    expect(page.locator("pre").last).to_contain_text(f"StorePath: {top}")
    shot(page, artifacts, "cache")
    page.goto("/_ui/caches")
    shot(page, artifacts, "caches")
    page.goto("/_ui/")
    expect(page.locator('[data-figure="hit-rate-main"]')).not_to_have_text("—")
    shot(page, artifacts, "overview-traffic")


def test_mint_and_revoke_a_token(context: BrowserContext, plane: Plane,
                                 artifacts: Path) -> None:
    page = context.new_page()
    page.goto("/_ui/tokens")
    page.fill('input[name="sub"]', "browser-ci")
    page.fill('input[name="push"]', "ci")
    page.get_by_role("button", name="Mint").click()
    token = page.locator("#minted-token").inner_text().strip()
    assert token.count(".") == 2
    shot(page, artifacts, "token-minted")
    private = f"{plane.url}/ci/nix-cache-info"
    assert httpx.get(private, headers={"authorization": f"Bearer {token}"}).status_code == 200
    page.goto("/_ui/tokens")
    assert token not in page.content()      # shown once, never again
    row = page.locator("tr", has_text="browser-ci")
    expect(row).to_contain_text("ci:r,w")
    shot(page, artifacts, "tokens")
    row.get_by_role("link", name="Revoke").click()
    shot(page, artifacts, "confirm")
    page.get_by_role("button", name="Revoke").click()
    expect(page.locator(".ok")).to_contain_text("is revoked")
    refused = httpx.get(private, headers={"authorization": f"Bearer {token}"})
    assert refused.status_code == 401 and "revoked" in refused.json()["message"]


def test_pause_a_pool_as_a_pull_request(context: BrowserContext, plane: Plane,
                                        artifacts: Path) -> None:
    plane.tailnet.login, plane.tailnet.name = OPERATOR, "Olivia"
    page = context.new_page()
    page.goto("/_ui/fleet")
    expect(page.locator("header .role")).to_have_text("operator")
    expect(page.locator("tr.stuck", has_text="nix-7xk2p-failed")).to_contain_text(
        "Pod has failed to start more than 5 times")
    expect(page.locator("tr.stuck", has_text="nix-7xk2p-pull")).to_contain_text(
        "ImagePullBackOff")
    shot(page, artifacts, "fleet")
    page.locator("#pool-nix").get_by_role("link", name="Pause").click()
    expect(page.locator("pre.diff")).to_contain_text("+    maxRunners: 0")
    shot(page, artifacts, "pause-confirm")
    page.get_by_role("button", name="Pause nix").click()
    link = page.get_by_role("link", name="Follow the change")
    expect(page.locator(".ok")).to_contain_text("https://github.com/acme/platform/pull/")
    number = int(re.search(r"/pull/(\d+)", page.locator(".ok").inner_text()).group(1))  # type: ignore[union-attr]
    pull = plane.github.pulls[number]
    assert pull.title == "Pause pool nix"
    spec = plane.github.file(pull.head, "fleet.yaml")
    assert '    maxRunners: 0  # flywheel-paused: {"maxRunners":20,"minRunners":1,' \
           '"schedules":{"working-hours":4}}' in spec
    assert "        minRunners: 0\n" in spec and "-        minRunners: 4\n" in pull.body
    link.click()
    expect(page.locator('[data-figure="change-state"]')).to_have_text("open")
    shot(page, artifacts, "change")
    page.goto("/_ui/changes")
    expect(page.locator("table").last).to_contain_text("Pause pool nix")
    shot(page, artifacts, "changes")
    page.goto("/_ui/changes/new?pool=docker")
    page.fill('input[name="max_runners"]', "8")
    page.get_by_role("button", name="Show the diff").click()
    expect(page.locator("pre.diff")).to_contain_text("+    maxRunners: 8")
    shot(page, artifacts, "edit-pool")


def test_a_passkey_registered_then_used_alone(context: BrowserContext, plane: Plane,
                                             artifacts: Path) -> None:
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True,
        "automaticPresenceSimulation": True}})
    page.goto("/_ui/settings")
    page.fill("#passkey-name", "laptop")
    page.click("#passkey-register")
    expect(page.locator('input[aria-label="passkey name"]')).to_have_value("laptop")
    shot(page, artifacts, "settings-passkey")

    # Now nothing but the passkey: a Funnel request (no identity) and no session.
    plane.tailnet.login = None
    context.clear_cookies()
    page.goto("/_ui/")
    expect(page.get_by_role("button", name="Sign in with a passkey")).to_be_visible()
    shot(page, artifacts, "signin")
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page).to_have_url(re.compile(r"/_ui/$"))
    expect(page.locator("header .me")).to_contain_text("Alice Müller")
    page.goto("/_ui/settings")
    expect(page.locator('[data-figure="identity"]')).to_have_text(f"tailnet:{ADMIN}")
    expect(page.locator('[data-figure="via"]')).to_contain_text("session begun through passkey")


def test_state_locks_and_force_unlock(context: BrowserContext, plane: Plane,
                                      artifacts: Path) -> None:
    admin = {"authorization": f"Bearer {plane.srv.admin_token}"}
    lock = {"ID": "3f1b2c4d-0000-4000-8000-000000000001", "Operation": "OperationTypeApply",
            "Info": "", "Who": "deploy@ci-runner-7", "Version": "1.9.0",
            "Created": "2025-03-03T09:00:00Z", "Path": ""}
    written = httpx.post(f"{plane.url}/_state/prod-network", headers=admin,
                         content=json.dumps({"version": 4, "serial": 1, "lineage": "l1",
                                             "resources": []}))
    assert written.status_code == 200, written.text
    locked = httpx.request("LOCK", f"{plane.url}/_state/prod-network/lock", headers=admin,
                           content=json.dumps(lock))
    assert locked.status_code == 200, locked.text
    page = context.new_page()
    page.goto("/_ui/")      # held longer than [ui] lock-alert (1s here): an alert
    expect(page.locator(".alerts")).to_contain_text(
        "workspace prod-network is locked by", timeout=WAIT_MS)
    page.goto("/_ui/state")
    row = page.locator("tr", has_text="prod-network")
    expect(row).to_contain_text("held by")
    shot(page, artifacts, "state")
    row.get_by_role("link", name="Force-unlock").click()
    page.get_by_role("button", name="Force-unlock").click()
    expect(page.locator(".ok")).to_contain_text("it is unlocked now")
    page.goto("/_ui/state")
    expect(page.locator("tr", has_text="prod-network")).to_contain_text("free")


def test_an_unreachable_source_is_shown_as_unreachable(context: BrowserContext, plane: Plane,
                                                       artifacts: Path) -> None:
    page = context.new_page()
    plane.github.down = True
    try:
        page.goto("/_ui/fleet")
        warning = page.locator(".unreachable").first
        expect(warning).to_contain_text("Unreachable: GitHub acme/platform@main:fleet.yaml")
        expect(warning).to_contain_text("503")
        assert page.locator("#pool-nix").count() == 0     # no figures in its place
        shot(page, artifacts, "fleet-unreachable")
    finally:
        plane.github.down = False

"""Who a request is, and hostile attempts to be someone else: identity headers only from the
trusted proxy's address (spoofs from anywhere else ignored and logged), Funnel requests
without identity, certificate subjects from nginx and Envoy, sessions that are signed,
expire and can be revoked, and CSRF on every state-changing request of a browser."""

from __future__ import annotations

import hashlib
import hmac
import re
import time

import httpx
from itsdangerous import URLSafeTimedSerializer
from itsdangerous.timed import TimestampSigner

from flywheel.auth.sessions import COOKIE, session_key
from tests.operator.conftest import ADMIN, NOBODY, OPERATOR, VIEWER, Plane


def _whoami(client: httpx.Client) -> httpx.Response:
    return client.get("/_api/v1/whoami")


def _csrf(page: str) -> str:
    m = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page)
    assert m, page[:500]
    return m.group(1)


def test_tailnet_identity_from_the_trusted_proxy(plane: Plane) -> None:
    with plane.person(VIEWER, "=?utf-8?q?Victor_M=C3=BCller?=") as victor:
        me = _whoami(victor).json()
    assert me["identity"] == f"tailnet:{VIEWER}"
    assert me["display"] == "Victor Müller"      # RFC 2047 decoded
    assert (me["via"], me["role"]) == ("tailnet", "viewer")


def test_identity_headers_from_anywhere_else_are_ignored_and_logged(plane: Plane) -> None:
    spoof = {"tailscale-user-login": ADMIN, "tailscale-user-name": "Alice",
             "x-ssl-client-s-dn": "CN=alice", "x-ssl-client-verify": "SUCCESS"}
    with httpx.Client(base_url=plane.url, headers=spoof, timeout=30) as direct:
        assert _whoami(direct).status_code == 401
        assert direct.get("/_api/v1/tokens").status_code == 401
        page = direct.get("/_ui/fleet")
        assert page.status_code == 401 and "Sign in" in page.text
    assert "ignored identity headers tailscale-user-login" in plane.srv.log()
    assert "from untrusted address 127.0.0.1" in plane.srv.log()


def test_funnel_requests_carry_no_identity(plane: Plane) -> None:
    with plane.person(ADMIN) as funnel:
        funnel.headers["tailscale-funnel-request"] = "?1"
        assert _whoami(funnel).status_code == 401


def test_certificate_subjects_forwarded_by_a_trusted_proxy(plane: Plane) -> None:
    with plane.person(None) as proxy:
        nginx = proxy.get("/_api/v1/whoami", headers={
            "x-ssl-client-s-dn": "CN=ci-robot,O=Acme", "x-ssl-client-verify": "SUCCESS"})
        assert nginx.json()["identity"] == "cert:CN=ci-robot,O=Acme"
        assert nginx.json()["via"] == "cert"
        failed = proxy.get("/_api/v1/whoami", headers={
            "x-ssl-client-s-dn": "CN=ci-robot,O=Acme", "x-ssl-client-verify": "FAILED:expired"})
        assert failed.status_code == 401
        envoy = proxy.get("/_api/v1/whoami", headers={
            "x-forwarded-client-cert": 'By=spiffe://acme/flywheel;Hash=abc;'
                                       'Subject="CN=deploy-bot,OU=ci,O=Acme";URI='})
        assert envoy.json()["identity"] == "cert:CN=deploy-bot,OU=ci,O=Acme"


def test_roles_come_from_config_and_github_teams(plane: Plane) -> None:
    for login, role in ((ADMIN, "admin"), (OPERATOR, "operator"), (VIEWER, "viewer"),
                        (NOBODY, None), ("octocat@github", "viewer"),
                        ("mallory@github", None)):
        with plane.person(login) as client:
            assert _whoami(client).json()["role"] == role, login
    assert any("/orgs/acme/teams/sre/memberships/octocat" in r for r in plane.github.requests)
    with plane.person(NOBODY) as nobody:
        assert nobody.get("/_ui/").status_code == 403
        assert nobody.get("/_ui/settings").status_code == 200   # who am I: no role


def test_a_first_page_signs_in_with_a_session_and_csrf(plane: Plane) -> None:
    with plane.person(OPERATOR) as olivia:
        page = olivia.get("/_ui/settings")
        assert page.status_code == 200
        cookie = page.cookies[COOKIE]
        set_cookie = page.headers["set-cookie"]
        assert "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie
        assert "Secure" not in set_cookie     # served over plain HTTP here
        csrf = _csrf(page.text)
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        # Without the token, with a wrong one, and with the right one.
        url = "/_ui/settings/passkeys/none/rename"
        assert olivia.post(url, data={"name": "x"}).status_code == 403
        assert olivia.post(url, data={"name": "x", "csrf": "0" * 64}).status_code == 403
        assert olivia.post(url, data={"name": "x", "csrf": csrf}).status_code == 404
        api = olivia.post("/_api/v1/passkeys/options")
        assert api.status_code == 403 and "CSRF" in api.json()["message"]
        assert olivia.post("/_api/v1/passkeys/options",
                           headers={"x-csrf-token": csrf}).status_code == 200
        assert cookie


def test_forged_expired_and_revoked_session_cookies_are_refused(plane: Plane) -> None:
    with plane.person(VIEWER) as victor:
        cookie = victor.get("/_ui/").cookies[COOKIE]
    with httpx.Client(base_url=plane.url, timeout=30) as browser:
        browser.cookies.set(COOKIE, cookie)
        assert _whoami(browser).json()["via"] == "session"
        # Forged: the same session id under another signature.
        payload, _, signature = cookie.rpartition(".")
        browser.cookies.set(COOKIE, f"{payload}.{signature[::-1]}")
        assert _whoami(browser).status_code == 401
        # Expired: signed with the real key, but longer ago than the session lifetime.
        secret = (plane.srv.data_dir / "token-secret").read_text().strip()
        serializer = URLSafeTimedSerializer(session_key(secret), salt="flywheel-session",
                                            signer_kwargs={"digest_method": hashlib.sha256})
        session_id = serializer.loads(cookie)

        class Past(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(time.time()) - 13 * 3600

        old = URLSafeTimedSerializer(session_key(secret), salt="flywheel-session",
                                     signer=Past, signer_kwargs={
                                         "digest_method": hashlib.sha256}).dumps(session_id)
        browser.cookies.set(COOKIE, old)
        assert _whoami(browser).status_code == 401
        # Revoked: the owner ends it from another session.
        browser.cookies.set(COOKIE, cookie)
        assert _whoami(browser).status_code == 200
        with plane.person(VIEWER) as other:
            page = other.get("/_ui/settings")
            sessions = other.get("/_api/v1/sessions").json()["sessions"]
            target = next(s for s in sessions if not s["current"] and
                          hmac.compare_digest(s["id"], _id_of(plane, session_id)))
            revoked = other.post(f"/_ui/settings/sessions/{target['id']}/revoke",
                                 data={"csrf": _csrf(page.text)})
            assert revoked.status_code == 303
        assert _whoami(browser).status_code == 401


def _id_of(plane: Plane, session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()[:32]


def test_state_changes_and_refusals_are_audited(plane: Plane) -> None:
    with plane.api("viewer") as viewer:
        assert viewer.post("/_api/v1/fleet/pools/nix/pause").status_code == 403
    with plane.api("admin") as admin:
        minted = admin.post("/_api/v1/tokens", json={"sub": "audited", "caches": {"main": {
            "r": 1}}})
        assert minted.status_code == 201
        events = admin.get("/_api/v1/audit", params={"limit": 50}).json()["events"]
    refused = next(e for e in events if e["action"] == "api-fleet.post")
    assert (refused["actor"], refused["outcome"], refused["address"]) == \
        ("viewer-bot", "refused", "127.0.0.1")
    mint = next(e for e in events if e["action"] == "tokens.post")
    assert (mint["actor"], mint["via"], mint["outcome"]) == ("admin", "token", "ok")
    assert any(e["action"] == "session.begin" for e in events)

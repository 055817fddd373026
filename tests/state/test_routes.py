"""The route table's state routes, every one: anonymous callers are refused (401), callers
with rights on other workspaces only are refused (403), and so are callers holding every
workspace permission except the one the route needs. Enumerated from ``ENDPOINTS``, so a
route added later cannot skip the check."""

from __future__ import annotations

import pytest

from flywheel.auth.authorize import WorkspaceAction
from flywheel.server.access import Endpoint
from flywheel.server.app import ENDPOINTS
from tests.state.conftest import Caller, lock_info, state_body, token_for
from tests.support.server import FlywheelServer

WORKSPACE_ROUTES = [(method, e) for e in ENDPOINTS if e.resource == "workspace"
                    for method in e.methods]
ALL_BITS = "rwla"


def call(caller: Caller, method: str, endpoint: Endpoint) -> int:
    path = endpoint.path.replace("{workspace}", "prod-guarded")
    body = {"ID": lock_info()["ID"]} if "lock" in endpoint.label else None
    if endpoint.path.endswith("/rollback"):
        body = {"to": 1}
    content = state_body(1) if endpoint.label == "state" and method == "POST" else None
    if body is not None:
        return caller.request(method, path, json=body).status_code
    return caller.request(method, path, content=content).status_code


def test_every_state_route_is_in_the_table() -> None:
    paths = {(m, e.path) for m, e in WORKSPACE_ROUTES}
    for method in ("GET", "POST", "DELETE", "LOCK", "UNLOCK"):
        assert (method, "/_state/{workspace}") in paths
    for method in ("LOCK", "UNLOCK", "POST", "DELETE"):
        assert (method, "/_state/{workspace}/lock") in paths
    assert len(WORKSPACE_ROUTES) >= 15


@pytest.mark.parametrize(("method", "endpoint"), WORKSPACE_ROUTES,
                         ids=[f"{m} {e.path}" for m, e in WORKSPACE_ROUTES])
def test_refused_without_the_routes_permission(server: FlywheelServer, method: str,
                                               endpoint: Endpoint) -> None:
    assert endpoint.action is not None
    anonymous = Caller(server.url, None)
    elsewhere = Caller(server.url, token_for(server, "elsewhere", **{"dev-*": ALL_BITS}))
    short = ALL_BITS.replace(str(endpoint.action), "")
    if endpoint.path == "/_api/v1/state":
        # The listing answers everyone with a token, showing only what each may read.
        assert call(anonymous, method, endpoint) == 401
        return
    under = Caller(server.url, token_for(server, "under", **{"prod-*": short}))
    assert call(anonymous, method, endpoint) == 401
    assert call(elsewhere, method, endpoint) == 403
    assert call(under, method, endpoint) == 403


def test_a_read_only_token_gets_403_on_post_and_lock(server: FlywheelServer) -> None:
    reader = Caller(server.url, token_for(server, "reader", **{"prod-*": "r"}))
    assert reader.request("POST", "/_state/prod-ro", content=state_body(1)).status_code == 403
    assert reader.request("LOCK", "/_state/prod-ro/lock", json=lock_info()).status_code == 403
    assert reader.request("GET", "/_state/prod-ro").status_code == 404


def test_the_listing_shows_only_readable_workspaces(server: FlywheelServer) -> None:
    writer = Caller(server.url, token_for(server, "w", **{"prod-*": "rwl", "dev-*": "rwl"}))
    for ws in ("prod-listed", "dev-hidden"):
        assert writer.request("POST", f"/_state/{ws}", content=state_body(1)).status_code == 200
    prod_only = Caller(server.url, token_for(server, "p", **{"prod-*": "r"}))
    names = {w["name"] for w in prod_only.request("GET", "/_api/v1/state").json()["workspaces"]}
    assert "prod-listed" in names and "dev-hidden" not in names
    nothing = Caller(server.url, token_for(server, "n", **{"other": "r"}))
    assert nothing.request("GET", "/_api/v1/state").json() == {"workspaces": []}


def test_refusals_say_nothing_of_whether_a_workspace_exists(server: FlywheelServer) -> None:
    writer = Caller(server.url, token_for(server, "w", **{"prod-*": "rwl"}))
    writer.request("POST", "/_state/prod-exists", content=state_body(1))
    stranger = Caller(server.url, token_for(server, "s", **{"dev-*": "rwla"}))
    answers = [stranger.request("GET", f"/_api/v1/state/{ws}") for ws in
               ("prod-exists", "prod-never")]
    assert [a.status_code for a in answers] == [403, 403]
    assert answers[0].json()["message"].replace("exists", "never") == answers[1].json()["message"]


def test_workspace_actions_are_the_claim_bits() -> None:
    assert {a.value for a in WorkspaceAction} == set(ALL_BITS)

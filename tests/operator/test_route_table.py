"""Every route of the operator plane, from the route table: each refuses anonymous callers
(401) and callers below the role its resource and action need (403), and lets the role it
needs through. A route added to ``ENDPOINTS`` is checked here without being named."""

from __future__ import annotations

import re

import pytest

from flywheel.auth.authorize import ServerAction
from flywheel.server import ui
from flywheel.server.access import Endpoint
from flywheel.server.api import openapi, operator
from flywheel.server.app import ENDPOINTS
from tests.operator.conftest import Plane

ROLE_RESOURCES = {"server", "fleet", "tokens", "audit"}
OURS = (*operator.ENDPOINTS, *ui.ENDPOINTS, openapi.OPENAPI)
# Routes anyone may call, each for its reason (see their declarations).
OPEN = {ui.ROOT, ui.SIGNIN, ui.STATIC, operator.SIGNIN, operator.SIGNIN_OPTIONS,
        operator.SIGNIN_PASSKEY, operator.WEBHOOK, openapi.OPENAPI}
# The role just below the one an action needs (a token mapped to it in [auth]).
BELOW = {ServerAction.VIEW: "nobody", ServerAction.OPERATE: "viewer",
         ServerAction.ADMINISTER: "operator"}
NEEDED = {ServerAction.VIEW: "viewer", ServerAction.OPERATE: "operator",
          ServerAction.ADMINISTER: "admin"}


def _cases() -> list[tuple[str, Endpoint]]:
    """Every method of every route that needs someone; the open ones have their own checks
    (sign-in, signatures) in the other tests."""
    return [(method, ep) for ep in OURS if ep not in OPEN for method in ep.methods]


def _path(ep: Endpoint) -> str:
    return re.sub(r"\{(\w+)(?::path)?\}", "probe", ep.path)


def _call(plane: Plane, role: str | None, method: str, ep: Endpoint) -> int:
    with plane.api(role) as api:
        body: dict[str, object] | None = {} if method in ("POST", "PATCH", "PUT") else None
        return api.request(method, _path(ep), json=body).status_code


def test_every_route_of_the_plane_declares_a_known_resource() -> None:
    ours = [ep for ep in ENDPOINTS if ep.path.startswith("/_ui") or ep in OURS]
    assert set(ours) == set(OURS)
    for ep in OURS:
        assert ep.resource in ROLE_RESOURCES | {"account", "none"}, ep
        assert (ep.action is None) == (ep.resource == "none"), ep
    assert {ep for ep in OURS if ep.resource == "none"} == OPEN


@pytest.mark.parametrize(("method", "endpoint"), _cases(),
                         ids=[f"{m} {ep.path}" for m, ep in _cases()])
def test_route_refuses_anonymous_and_under_privileged(plane: Plane, method: str,
                                                      endpoint: Endpoint) -> None:
    assert _call(plane, None, method, endpoint) == 401
    if endpoint.resource == "account":
        return   # any identified caller: nothing is below that but anonymous
    assert endpoint.action is not None
    action = ServerAction(endpoint.action)
    assert _call(plane, BELOW[action], method, endpoint) == 403
    allowed = _call(plane, NEEDED[action], method, endpoint)
    assert allowed not in (401, 403) and allowed < 500, allowed

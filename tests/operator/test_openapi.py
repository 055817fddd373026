"""The OpenAPI document: generated from the route table, so it covers every ``/_api/v1`` route
with the permission the route declares; and schemathesis, driving the running server from
it with an admin's token, finds no answer of 500 or above."""

from __future__ import annotations

from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings

from flywheel.server.api.openapi import PREFIX, WIRES
from flywheel.server.app import ENDPOINTS
from tests.operator.conftest import Plane


def test_every_api_route_is_in_the_document(plane: Plane) -> None:
    document = httpx.get(f"{plane.url}/_api/v1/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    routes = {(method, ep) for ep in ENDPOINTS if ep.path.startswith(PREFIX)
              for method in ep.methods}
    assert len(routes) >= 40
    for method, ep in routes:
        assert (method, ep.path) in WIRES, f"{method} {ep.path} has no wire models"
        operation = document["paths"][ep.path][method.lower()]
        assert operation["x-permission"]["resource"] == ep.resource
        assert operation["x-permission"]["action"] == ep.action
        assert operation["x-permission"]["or"] == list(ep.or_actions)
        if ep.resource == "none":
            assert operation["security"] == []
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert documented == {(m, ep.path) for m, ep in routes}


def test_no_server_errors(plane: Plane) -> None:
    """Every operation with generated parameters and bodies; the first answers of 500 or
    above are reported together."""
    schema = schemathesis.openapi.from_url(f"{plane.url}/_api/v1/openapi.json")
    auth = {"authorization": f"Bearer {plane.tokens['admin']}"}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 40
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            response = case.call(headers=auth, timeout=60)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: "
                                f"{response.status_code} {response.text[:300]}")

        call()
    assert not failures, "\n".join(failures[:20])

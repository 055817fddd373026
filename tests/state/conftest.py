"""One real server for the state tests of a module, and tokens with workspace grants."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from flywheel.app.secrets import load_or_create_token_secret
from flywheel.auth.permissions import Grants, WorkspacePermission
from flywheel.auth.tokens import TokenSigner
from tests.support.server import FlywheelServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlywheelServer]:
    srv = FlywheelServer(tmp_path_factory.mktemp("state") / "data").start()
    yield srv
    srv.stop()


def token_for(server: FlywheelServer, sub: str, **globs: str) -> str:
    """A token signed with the server's secret, granting ``bits`` (``"rwl"``) per glob."""
    signer = TokenSigner(load_or_create_token_secret(server.data_dir))
    grants = Grants(workspaces=tuple(
        (glob, WorkspacePermission(**{bit: True for bit in bits}))
        for glob, bits in globs.items()))
    return signer.mint(sub, grants, 3600)[0]


@dataclass
class Caller:
    """An HTTP client of the state backend with one token, as OpenTofu's client calls it."""

    url: str
    token: str | None

    def request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})  # type: ignore[call-overload]
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        return httpx.request(method, self.url + path, headers=headers, timeout=30,
                             **kwargs)  # type: ignore[arg-type]


def lock_info(lock_id: str | None = None, who: str = "alice@laptop") -> dict[str, str]:
    return {"ID": lock_id or str(uuid.uuid4()), "Operation": "OperationTypeApply", "Info": "",
            "Who": who, "Version": "1.0.3", "Created": "2024-01-01T00:00:00Z", "Path": ""}


def state_body(serial: int, lineage: str = "lineage-a", **outputs: str) -> bytes:
    return json.dumps({"version": 4, "terraform_version": "1.0.3", "serial": serial,
                       "lineage": lineage, "outputs": {k: {"value": v, "type": "string"}
                                                       for k, v in outputs.items()},
                       "resources": []}).encode()

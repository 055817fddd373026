"""A real Terraform against the server: init, apply, a second apply that meets the lock and
fails cleanly, force-unlock, state pull, and an apply after the server restarts."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx

from tests.state.conftest import token_for
from tests.state.terraform import Terraform
from tests.support.server import FlywheelServer

# Only locals and outputs: no provider to download.
CONFIG = """
locals {{ greeting = "{greeting}" }}
output "greeting" {{ value = local.greeting }}
"""


def test_terraform_applies_locks_conflicts_and_force_unlocks(
        server: FlywheelServer, tmp_path: Path) -> None:
    token = token_for(server, "deployer", **{"prod-*": "rwl"})
    tf = Terraform(tmp_path / "tf", token)
    tf.write(server.url, "prod-network", CONFIG.format(greeting="hello"))
    tf.run("init", "-input=false")
    tf.run("apply", "-auto-approve", "-input=false")
    pulled = json.loads(tf.run("state", "pull").stdout)
    assert pulled["outputs"]["greeting"]["value"] == "hello"
    lineage = pulled["lineage"]

    # Someone else holds the lock (a crashed apply, say): terraform says who, and fails.
    holder = {"ID": "11111111-2222-3333-4444-555555555555", "Operation": "OperationTypeApply",
              "Info": "", "Who": "bob@ci", "Version": "1.0.3",
              "Created": "2024-01-01T00:00:00Z", "Path": ""}
    r = httpx.request("LOCK", f"{server.url}/_state/prod-network/lock", json=holder,
                      headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200
    tf.write(server.url, "prod-network", CONFIG.format(greeting="changed"))
    blocked = tf.run("apply", "-auto-approve", "-input=false", "-lock-timeout=0s",
                     check=False)
    assert blocked.returncode != 0
    assert "already locked" in blocked.stderr and holder["ID"] in blocked.stderr
    assert json.loads(tf.run("state", "pull").stdout)["outputs"]["greeting"]["value"] == "hello"

    tf.run("force-unlock", "-force", holder["ID"])
    tf.run("apply", "-auto-approve", "-input=false")
    after = json.loads(tf.run("state", "pull").stdout)
    assert after["outputs"]["greeting"]["value"] == "changed"
    assert after["lineage"] == lineage and after["serial"] > pulled["serial"]

    server.restart()
    tf.write(server.url, "prod-network", CONFIG.format(greeting="restarted"))
    tf.run("apply", "-auto-approve", "-input=false")
    final = json.loads(tf.run("state", "pull").stdout)
    assert final["outputs"]["greeting"]["value"] == "restarted"
    assert final["lineage"] == lineage


def test_two_concurrent_applies_one_meets_the_lock(server: FlywheelServer,
                                                   tmp_path: Path) -> None:
    token = token_for(server, "deployer", **{"prod-*": "rwl"})
    first, second = (Terraform(tmp_path / name, token) for name in ("a", "b"))
    for tf in (first, second):
        tf.write(server.url, "prod-race", CONFIG.format(greeting="x"))
        tf.run("init", "-input=false")
    # The first apply holds the lock while terraform waits for its approval on stdin.
    holding = first.start("apply")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            r = httpx.get(f"{server.url}/_api/v1/state/prod-race",
                          headers={"authorization": f"Bearer {token}"})
            if r.status_code == 200 and r.json()["lock"] is not None:
                held = r.json()["lock"]["id"]
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the first apply never took the lock")
        blocked = second.run("apply", "-auto-approve", "-input=false", check=False)
        assert blocked.returncode != 0
        # Terraform names the holder's lock, which the server handed back with the 423.
        assert re.search(rf"already locked:.*ID={held}", blocked.stderr, re.S), blocked.stderr
    finally:
        holding.communicate("no\n", timeout=120)
    # The first apply was declined and released its lock: the second now goes through.
    second.run("apply", "-auto-approve", "-input=false")

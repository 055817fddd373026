"""Shared fixtures for the runner-plane tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import FlywheelServer

REPO = Path(__file__).resolve().parents[2]
# Reference data beside the repository: read at test time, never copied into it.
ARC = REPO.parent / "shared" / "data" / "arc"
DATA = Path(__file__).resolve().parent / "data"
EXAMPLE = DATA / "fleet.yaml"
CACHE = "ci"     # the private cache runner tests use


@pytest.fixture(scope="session")
def arc_crds() -> Path:
    if not (ARC / "actions.github.com_autoscalingrunnersets.yaml").is_file():
        pytest.fail(f"the ARC reference data is missing: {ARC} (the CRDs and chart values)")
    return ARC


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlywheelServer]:
    """A real cache server with a private cache :data:`CACHE`, shared by a module's tests."""
    server = FlywheelServer(tmp_path_factory.mktemp("cache-server") / "data").start()
    server.cli("cache", "create", CACHE, "--private")
    yield server
    server.stop()

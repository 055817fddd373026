from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.nixenv import Nix
from tests.support.server import FlywheelServer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FlywheelServer]:
    srv = FlywheelServer(tmp_path / "data").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def nix(tmp_path: Path) -> Nix:
    if shutil.which("nix") is None:
        pytest.fail("the real nix client is required (./dev test installs nix-bin)")
    return Nix(tmp_path / "nix-client")


@pytest.fixture
def other_nix(tmp_path: Path) -> Nix:
    """A second client with its own narinfo cache: the machine that substitutes."""
    return Nix(tmp_path / "nix-other")

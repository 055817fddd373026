"""Shared fixtures for the runner-plane tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Reference data beside the repository: read at test time, never copied into it.
ARC = REPO.parent / "shared" / "data" / "arc"
DATA = Path(__file__).resolve().parent / "data"
EXAMPLE = DATA / "fleet.yaml"


@pytest.fixture(scope="session")
def arc_crds() -> Path:
    if not (ARC / "actions.github.com_autoscalingrunnersets.yaml").is_file():
        pytest.fail(f"the ARC reference data is missing: {ARC} (the CRDs and chart values)")
    return ARC

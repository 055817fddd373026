"""``[ui] changes = "direct"``: a pause is validated against the cluster's CRDs, written to
the local spec (comments kept) and applied with server-side apply; a resume restores it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fleet.conftest import EXAMPLE
from tests.operator.conftest import ARC_API, Plane, apply_example
from tests.support.server import FlywheelServer


@pytest.fixture(scope="module")
def direct(plane: Plane, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[FlywheelServer, Path]]:
    workdir = tmp_path_factory.mktemp("direct")
    spec = workdir / "fleet.yaml"
    spec.write_text(EXAMPLE.read_text())
    config = workdir / "flywheel.toml"
    config.write_text(f'''
[auth]
operators = ["token:ops-bot"]

[ui]
changes = "direct"
fleet-spec = "{spec}"
kubeconfig = "{plane.cluster.kubeconfig}"
''')
    srv = FlywheelServer(workdir / "data", workers=1, extra_args=["--config", str(config)])
    srv.start()
    yield srv, spec
    srv.stop()


def test_a_pause_applied_directly(direct: tuple[FlywheelServer, Path], plane: Plane) -> None:
    srv, spec = direct
    before = spec.read_text()
    token = srv.mint("ops-bot", "--pull", "main")
    with httpx.Client(base_url=srv.url, timeout=120,
                      headers={"authorization": f"Bearer {token}"}) as ops:
        paused = ops.post("/_api/v1/fleet/pools/docker/pause")
        assert paused.status_code == 201, paused.text
        assert (paused.json()["forge"], paused.json()["url"]) == ("direct", None)
        assert "    maxRunners: 0  # flywheel-paused:" in spec.read_text()
        assert spec.read_text().startswith("# A complete fleet")
        live = plane.cluster.get(ARC_API, "AutoscalingRunnerSet", "docker", "arc-docker")
        assert live is not None and live["spec"]["maxRunners"] == 0
        resumed = ops.post("/_api/v1/fleet/pools/docker/resume")
        assert resumed.status_code == 201, resumed.text
        assert spec.read_text() == before
        live = plane.cluster.get(ARC_API, "AutoscalingRunnerSet", "docker", "arc-docker")
        assert live is not None and live["spec"]["maxRunners"] == 5
        detail = ops.get(f"/_api/v1/changes/{resumed.json()['id']}").json()
        assert detail["live"]["error"] == \
            "this change was applied directly; there is nothing to follow"


def test_a_direct_pause_the_cluster_would_refuse_changes_nothing(
        direct: tuple[FlywheelServer, Path], plane: Plane) -> None:
    srv, spec = direct
    before = spec.read_text()
    plane.cluster.patch(ARC_API, "AutoscalingRunnerSet", "dind", "arc-runners",
                        {"spec": {"maxRunners": 9}}, manager="kubectl-edit")
    token = srv.mint("ops-bot", "--pull", "main")
    try:
        with httpx.Client(base_url=srv.url, timeout=120,
                          headers={"authorization": f"Bearer {token}"}) as ops:
            refused = ops.post("/_api/v1/fleet/pools/docker/pause")
        assert refused.status_code == 409, refused.text
        assert "AutoscalingRunnerSet arc-runners/dind" in refused.json()["message"]
        assert spec.read_text() == before
        live = plane.cluster.get(ARC_API, "AutoscalingRunnerSet", "docker", "arc-docker")
        assert live is not None and live["spec"]["maxRunners"] == 5
    finally:
        apply_example(plane.cluster, "--force-conflicts")

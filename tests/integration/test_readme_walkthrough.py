"""The README's quick start and .bazelrc lines, run as written (only the host, the paths and
the key a reader would fill in are substituted), against a real server with the real
nix and bazel."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.nixconf import isolated_nix_env
from tests.support.bazelenv import BUILD_FLAGS, Bazel, ProcessSummary
from tests.support.nixenv import Nix
from tests.support.server import FlywheelServer

README = (Path(__file__).parents[2] / "README.md").read_text()


def section(title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M)
    assert m, title
    return m.group(1)


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlywheelServer]:
    srv = FlywheelServer(tmp_path_factory.mktemp("readme") / "flywheel-data").start()
    try:
        yield srv
    finally:
        srv.stop()


def test_the_quick_start_runs_as_written(server: FlywheelServer, tmp_path: Path) -> None:
    start, push, substitute = blocks(section("Quick start"), "sh")
    assert start.startswith("./dev serve")  # what FlywheelServer runs: flywheel serve
    nix = Nix(tmp_path / "home")
    top = nix.build_closure(tmp_path, files=2)
    # Run where the server's data directory is ./flywheel-data, as after `./dev serve`.
    cwd = server.data_dir.parent
    (cwd / "result").unlink(missing_ok=True)
    (cwd / "result").symlink_to(top)
    key = server.public_key()
    other_root = tmp_path / "other-root"
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"

    def run(block: str, home: str) -> str:
        script = (block.replace("127.0.0.1:8080", f"127.0.0.1:{server.port}")
                  .replace("'HOST-main-1:…'", f"'{key}'")
                  .replace("/some/other/root", str(other_root))
                  .replace("/nix/store/…", top))
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd,
                              env=isolated_nix_env(tmp_path / home, PATH=path),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    run(push, "pusher")
    # "Elsewhere": another machine, which must really fetch the path from the server (the
    # pusher's own Nix remembers the narinfos it wrote, unsigned by the server).
    nix.run("nix-store", "--delete", top)
    stdout = run(substitute, "elsewhere")
    assert f"Public Key: {key}" in stdout
    assert (other_root / top.lstrip("/")).exists()
    assert Path(top).exists()  # nix-store -r substituted it back from the server


@pytest.mark.parametrize("protocol", ["HTTP", "gRPC"])
def test_the_bazelrc_lines_give_remote_cache_hits(server: FlywheelServer, tmp_path: Path,
                                                  protocol: str) -> None:
    http_rc, grpc_rc = blocks(section("Bazel remote cache"), "bazelrc")
    rc = (http_rc if protocol == "HTTP" else grpc_rc)
    rc = (rc.replace("127.0.0.1:8080", f"127.0.0.1:{server.port}")
          .replace("127.0.0.1:9092", server.grpc_target)
          .replace("<token>", server.admin_token))
    flags = [f for f in BUILD_FLAGS if not f.startswith("--remote_cache=")]
    summaries: list[ProcessSummary | None] = []
    for client in ("first", "second"):
        with Bazel(tmp_path / client) as bazel:
            (bazel.workspace / ".bazelrc").write_text(rc)
            proc = bazel.run("build", *flags, "--", "//...")
            summaries.append(ProcessSummary.parse(proc.stderr))
    first, second = summaries
    assert first is not None and second is not None
    assert second.executed == 0, second
    assert second.remote_cache_hit == first.cacheable > 0

"""A runner as the fleet makes it, on this machine: the variables a rendered pool injects
(taken from the rendered AutoscalingRunnerSet, the token Secret resolved), a home of its
own, and the real nix and bazel with nothing configured but the isolated base config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.nixconf import isolated_nix_env
from flywheel.fleet.desired import keys_for
from flywheel.fleet.loader import load_text
from flywheel.fleet.render import render
from tests.support.bazelenv import WORKSPACE, ProcessSummary

SPEC = """\
name: test
github:
  app:
    id: 1
cacheServer:
  url: {url}
pools:
  - name: nix
    kind: nix
    scope: https://github.com/acme
    maxRunners: 2
    cache:
      nix: {cache}
      bazel: {cache}
      tokenSecret: flywheel-ci
"""


def pool_variables(url: str, cache: str, token: str, *, lookup_token: str) -> dict[str, str]:
    """The runner container's env of a pool rendered against the server at ``url`` (its
    key read from the server), with ``token`` as the Secret's value."""
    spec = load_text(Path("fleet.yaml"), SPEC.format(url=url, cache=cache))
    objects = render(spec.fleet, keys_for(spec, server_url=None, token=lookup_token))
    ars = next(o for o in objects if o["kind"] == "AutoscalingRunnerSet")
    env: list[dict[str, Any]] = ars["spec"]["template"]["spec"]["containers"][0]["env"]
    values = {}
    for var in env:
        if "valueFrom" in var:
            assert var["valueFrom"] == {"secretKeyRef": {"name": "flywheel-ci", "key": "token"}}
            values[var["name"]] = token
        else:
            values[var["name"]] = var["value"]
    return values


@dataclass
class Runner:
    home: Path

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)

    @property
    def nix_conf(self) -> Path:
        return self.home / "config" / "nix" / "nix.conf"

    def env(self, pool: dict[str, str], **extra: str) -> dict[str, str]:
        venv_bin = str(Path(sys.executable).parent)
        base = isolated_nix_env(self.home, NIX_USER_CONF_FILES=str(self.nix_conf),
                                XDG_CONFIG_HOME=str(self.home / "config"))
        base["PATH"] = f"{venv_bin}{os.pathsep}{base.get('PATH', '')}"
        for drop in [k for k in base if k.startswith(("BAZEL", "ATTIC_", "GITHUB_"))]:
            del base[drop]
        return {**base, **pool, **extra}

    def run(self, *args: str, env: dict[str, str], cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), capture_output=True, text=True, env=env, cwd=cwd,
                              timeout=timeout)

    # -- bazel, plain: only the workspace's own .bazelrc and what ~/.bazelrc imports --

    def workspace(self) -> Path:
        ws = self.home / "workspace"
        if not ws.exists():
            shutil.copytree(WORKSPACE, ws, symlinks=True)
            # This machine has no sandbox (no user namespaces); a project would say so too.
            with (ws / ".bazelrc").open("a") as f:
                f.write("build --spawn_strategy=local\nbuild --remote_timeout=10\n")
        return ws

    def bazel(self, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("bazel", f"--output_user_root={self.home / 'bazel-root'}",
                        "--max_idle_secs=60", *args, env=env, cwd=self.workspace())

    def bazel_build(self, env: dict[str, str]) -> tuple[ProcessSummary, str]:
        self.bazel(env, "clean")
        proc = self.bazel(env, "build", "//...")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        summary = ProcessSummary.parse(proc.stderr)
        assert summary is not None, proc.stderr
        return summary, proc.stderr

    def bazel_shutdown(self, env: dict[str, str]) -> None:
        if (self.home / "bazel-root").exists():
            self.bazel(env, "shutdown")

"""The ``flywheel`` client commands run as a user would run them: a process with its own
XDG config (profiles, nix.conf, netrc) and narinfo cache, against a real server."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bench.nixconf import isolated_nix_env
from tests.support.nixenv import Nix
from tests.support.server import FLYWHEEL, FlywheelServer

SUMMARY = re.compile(
    r"pushed (?P<pushed>\d+) \((?P<bytes>[^)]*)\), deduplicated (?P<deduplicated>\d+), "
    r"skipped (?P<skipped>\d+) \((?P<present>\d+) already present, (?P<upstream>\d+) "
    r"upstream\), failed (?P<failed>\d+), (?P<speed>[\d.]+) MiB/s")


@cache
def client_command() -> tuple[str, ...]:
    """``flywheel`` once the client commands are registered on it; until then the same
    commands through their own module."""
    import typer.main

    from flywheel.cli.main import app

    names = set(getattr(typer.main.get_command(app), "commands", {}))
    if {"login", "push", "use", "watch-store"} <= names:
        return (FLYWHEEL,)
    return (sys.executable, "-m", "flywheel.cli.remote")


def summary(output: str) -> dict[str, int]:
    matches = list(SUMMARY.finditer(output))
    assert matches, f"no summary line in:\n{output}"
    m = matches[-1]
    return {k: int(v) for k, v in m.groupdict().items() if k not in ("bytes", "speed")}


@dataclass
class Client:
    home: Path

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)

    @property
    def config_home(self) -> Path:
        return self.home / "config"

    @property
    def env(self) -> dict[str, str]:
        return isolated_nix_env(self.home, XDG_CONFIG_HOME=str(self.config_home), COLUMNS="200")

    def run(self, *args: str, check: bool = True, input: str | None = None,
            env: dict[str, str] | None = None, timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
        cmd = [*client_command(), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, input=input,
                              env={**self.env, **(env or {})}, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*client_command(), *args], env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def login(self, server: FlywheelServer, token: str | None, name: str = "test") -> None:
        self.run("login", name, server.url, *([token] if token else []))

    def push(self, cache: str, *args: str, check: bool = True
             ) -> subprocess.CompletedProcess[str]:
        return self.run("push", cache, *args, check=check)


def nix_with_user_conf(home: Path, conf: Path) -> dict[str, str]:
    """Environment for a nix that reads ``conf`` as the user's nix.conf, over the isolated
    machine configuration (which names no substituter: this machine cannot reach
    cache.nixos.org). Nothing on the command line or in NIX_CONFIG names one either."""
    return isolated_nix_env(home, NIX_USER_CONF_FILES=str(conf),
                            XDG_CACHE_HOME=str(home / "nix-cache"))


def build_chain(nix: Nix, workdir: Path, sizes: list[int]) -> list[str]:
    """A fresh chain of store paths, each referencing the one before, holding ``sizes[i]``
    random bytes (incompressible, so uploads take the time their size says). Returns the
    paths in chain order (the first has no references)."""
    salt = uuid.uuid4().hex
    lets = []
    for i, size in enumerate(sizes):
        ref = f"echo ${{p{i - 1}}} > $out/ref; " if i else ""
        lets.append(f'  p{i} = mk "chain{i}" "mkdir $out; {ref}'
                    f'head -c {size} /dev/urandom > $out/blob";')
    expr = workdir / f"chain-{salt}.nix"
    expr.write_text(f'''
let
  mk = name: script: derivation {{
    inherit name; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" script ]; salt = "{salt}"; PATH = "/usr/bin:/bin";
  }};
{chr(10).join(lets)}
in [ {" ".join(f"p{i}" for i in range(len(sizes)))} ]
''')
    out = nix.run("nix-build", str(expr), "--no-out-link").stdout.split()
    assert len(out) == len(sizes), out
    return sorted(out, key=lambda p: int(p.rsplit("-chain", 1)[1]))

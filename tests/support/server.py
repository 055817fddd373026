"""A real ``flywheel serve`` process on a free loopback port, with its own data dir."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

FLYWHEEL = str(Path(sys.executable).with_name("flywheel"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    env.update(extra or {})
    return env


def run_cli(data_dir: Path, *args: str, check: bool = True, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``flywheel ARGS --data-dir DATA_DIR``; the data-dir option goes after the command."""
    cmd = [FLYWHEEL, *args, "--data-dir", str(data_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input,
                          env=clean_env(env), timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


@dataclass
class FlywheelServer:
    data_dir: Path
    port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    workers: int = 2
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> subprocess.Popen[bytes]:
        """Start ``flywheel serve`` in its own process group, without waiting for it."""
        self.log_path = self.data_dir.parent / f"serve-{self.port}.log"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [FLYWHEEL, "serve", "--data-dir", str(self.data_dir),
             "--listen", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
             "--grpc-listen", f"127.0.0.1:{self.grpc_port}",
             *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=clean_env(self.env),
            start_new_session=True)
        return self.proc

    def start(self) -> FlywheelServer:
        self.launch()
        assert self.proc is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited ({self.proc.returncode}):\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self) -> FlywheelServer:
        self.stop()
        return self.start()

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def cli(self, *args: str, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(self.data_dir, *args, check=check, input=input)

    def cache_info(self, name: str) -> dict[str, object]:
        info: dict[str, object] = json.loads(self.cli("cache", "info", name, "--json").stdout)
        return info

    def public_key(self, name: str = "main") -> str:
        return str(self.cache_info(name)["public_key"])

    def mint(self, sub: str, *flags: str) -> str:
        return self.cli("token", "mint", "--sub", sub, *flags).stdout.strip()

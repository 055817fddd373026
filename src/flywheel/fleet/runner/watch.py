"""``flywheel watch-store`` in the background for the rest of a job, and stopping it at the
end so it pushes what is queued. It runs under a server profile of its own, written here
from the injected URL and token."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from flywheel.client import profiles

PROFILE = "flywheel-runner"
PID_FILE = "watch-store.pid"
LOG_FILE = "watch-store.log"


def _flywheel() -> list[str]:
    found = shutil.which("flywheel")
    if found:
        return [found]
    return [sys.executable, "-c", "from flywheel.cli.main import main; main()"]


class WatchError(Exception):
    pass


def start(state_dir: Path, url: str, token: str, cache: str, ready_within: float = 30) -> int:
    """Start it and wait until it watches: paths the job adds before then would count as
    already there and never be pushed."""
    path = profiles.config_path()
    stored = profiles.load(path)
    stored.add(profiles.Profile(PROFILE, url, token))
    profiles.save(path, stored)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = state_dir / LOG_FILE
    with log_path.open("wb") as log:
        proc = subprocess.Popen([*_flywheel(), "watch-store", cache, "--server", PROFILE],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + ready_within
    while "watching " not in log_path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise WatchError(f"watch-store did not start: {log_path.read_text().strip()}")
        time.sleep(0.1)
    (state_dir / PID_FILE).write_text(f"{proc.pid}\n")
    return proc.pid


def _ours(pid: int) -> bool:
    """The pid still belongs to our watch-store (pids are reused)."""
    try:
        return b"watch-store" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop(state_dir: Path, timeout: float) -> str | None:
    """Signal it, wait until it has pushed what is queued; its log, or None if none ran."""
    pid_file = state_dir / PID_FILE
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return None
    if _ours(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _ours(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _ours(pid):
            os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return (state_dir / LOG_FILE).read_text(errors="replace")

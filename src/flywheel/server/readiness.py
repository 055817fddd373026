"""What ``/readyz`` knows about the processes it cannot see.

Whichever HTTP worker a probe reaches answers it, yet readiness is about all of them and the
gRPC listener. The supervisor knows that; it writes its verdict to a small JSON file
(replaced atomically, so a reader sees the old or the new one whole) that every worker reads
on each probe. A worker that has begun to drain says so itself, without waiting for the
file. No file yet means the supervisor has not seen everything start.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

READINESS_FILE_ENV = "_FLYWHEEL_READINESS_FILE"
SHUTTING_DOWN = "shutting down"


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str = ""


def publish(path: Path, readiness: Readiness) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    temp.write_text(json.dumps({"ready": readiness.ready, "reason": readiness.reason}))
    os.replace(temp, path)


def read(path: Path) -> Readiness:
    try:
        data = json.loads(path.read_text())
        return Readiness(data["ready"] is True, str(data["reason"]))
    except FileNotFoundError:
        return Readiness(False, "starting")
    except (OSError, ValueError, KeyError, TypeError) as e:
        return Readiness(False, f"process states unreadable: {e}")


class _ThisProcess:
    def __init__(self) -> None:
        self.draining = False
        value = os.environ.get(READINESS_FILE_ENV)
        # Unset when the app runs without a supervisor (built in a test): then only the
        # app's own checks apply.
        self.file = Path(value) if value else None


_this_process = _ThisProcess()


def begin_draining() -> None:
    """From now on this process answers probes with 503."""
    _this_process.draining = True


def not_ready_reason() -> str | None:
    """Why the server as a whole should get no traffic now, or None if it may."""
    if _this_process.draining:
        return SHUTTING_DOWN
    if _this_process.file is None:
        return None
    state = read(_this_process.file)
    return None if state.ready else state.reason

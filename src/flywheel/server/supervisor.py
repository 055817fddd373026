"""The long-lived parent: Granian's HTTP workers and the gRPC process, nothing else.

Run as ``python -m flywheel.server.supervisor`` by ``flywheel serve`` once the data dir is
ready; settings arrive validated in the environment. It imports no database code, so it
costs little memory beside the workers that do the work.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from granian import Granian
from granian.constants import Interfaces, RuntimeModes

from flywheel.app.settings import settings_from_worker_env

PARENT_PID_ENV = "_FLYWHEEL_PARENT_PID"


def main() -> None:
    settings = settings_from_worker_env()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    grpc = subprocess.Popen([sys.executable, "-m", "flywheel.server.grpc.process"],
                            env={**os.environ, PARENT_PID_ENV: str(os.getpid())})
    host, port = settings.host_port
    try:
        Granian(
            "flywheel.server.app:create_app",
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            workers=settings.workers,
            factory=True,
            log_access=False,
            log_level=settings.log_level,  # type: ignore[arg-type]
            respawn_failed_workers=True,
            runtime_mode=RuntimeModes.st,
        ).serve()
    finally:
        grpc.terminate()
        try:
            grpc.wait(10)
        except subprocess.TimeoutExpired:
            grpc.kill()


if __name__ == "__main__":
    main()

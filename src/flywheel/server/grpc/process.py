"""The gRPC process the supervisor starts: serve until told to stop, or until the parent
is gone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

from grpc_health.v1 import health_pb2

from flywheel.app.services import Services
from flywheel.app.settings import Settings, settings_from_worker_env
from flywheel.server.grpc.server import SERVICES, build_server

log = logging.getLogger(__name__)


async def _serve(settings: Settings, parent_pid: int) -> None:
    services = Services.open(settings, migrate_schema=False)
    built = build_server(services)
    server = built.server
    host, port = settings.grpc_host_port
    server.add_insecure_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    await server.start()
    for name in ("", *SERVICES):
        await built.health.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("gRPC on %s:%d", host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # If the parent dies without telling us (kill -9), do not linger holding the port.
    while not stop.is_set() and os.getppid() == parent_pid:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    await server.stop(5)
    services.close()


def main() -> None:
    """Entry point of the gRPC process the supervisor starts."""
    settings = settings_from_worker_env()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(settings, int(os.environ["_FLYWHEEL_PARENT_PID"])))


if __name__ == "__main__":
    main()

"""The gRPC process the supervisor starts: serve until told to stop, or until the supervisor
is gone; then refuse new calls, let those running finish within the drain timeout and cancel
the rest."""

from __future__ import annotations

import asyncio
import logging

from grpc_health.v1 import health_pb2

from flywheel.app.settings import Settings, settings_from_worker_env
from flywheel.server.lifecycle import StopRequest, SupervisorLink

log = logging.getLogger("flywheel.server.grpc.process")  # not __name__: "__main__" under -m


async def _serve(settings: Settings) -> None:
    stop = StopRequest("gRPC listener", settings.drain_timeout)
    link = SupervisorLink.from_env()
    stop.install(link)
    from flywheel.app.services import Services
    from flywheel.server.grpc.server import SERVICES, build_server

    services = Services.open(settings, migrate_schema=False)
    built = build_server(services)
    server = built.server
    host, port = settings.grpc_host_port
    server.add_insecure_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    await server.start()
    for name in ("", *SERVICES):
        await built.health.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("gRPC on %s:%d", host, port)
    link.report_serving()
    await stop.requested.wait()
    # Health checks say NOT_SERVING from now on; the listener closes and new calls are
    # refused; calls running get the rest of the drain timeout, then are cancelled (their
    # cleanup runs) before stop() returns.
    await built.health.enter_graceful_shutdown()
    await server.stop(stop.remaining())
    services.close()


def main() -> None:
    """Entry point of the gRPC process the supervisor starts."""
    settings = settings_from_worker_env()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(settings))


if __name__ == "__main__":
    main()

"""The gRPC process: REAPI cache services, ByteStream and health checking on one port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from flywheel.app.services import Services
from flywheel.app.settings import Settings, settings_from_worker_env
from flywheel.bazel.reapi import bs_grpc, re_grpc
from flywheel.server.grpc.services import (
    Access,
    ActionCache,
    ByteStream,
    Capabilities,
    ContentAddressableStorage,
)

log = logging.getLogger(__name__)

MAX_MESSAGE = 16 << 20
SERVICES = ("build.bazel.remote.execution.v2.Capabilities",
            "build.bazel.remote.execution.v2.ActionCache",
            "build.bazel.remote.execution.v2.ContentAddressableStorage",
            "google.bytestream.ByteStream")


def build_server(services: Services) -> grpc.aio.Server:
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
        # A second process on the same port would silently take half the traffic.
        ("grpc.so_reuseport", 0),
    ])
    access = Access(services)
    re_grpc.add_CapabilitiesServicer_to_server(Capabilities(access), server)
    re_grpc.add_ActionCacheServicer_to_server(ActionCache(access), server)
    re_grpc.add_ContentAddressableStorageServicer_to_server(
        ContentAddressableStorage(access), server)
    bs_grpc.add_ByteStreamServicer_to_server(
        ByteStream(access, str(services.blobs.tmp_dir)), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.health = health_servicer  # type: ignore[attr-defined]
    return server


async def _serve(settings: Settings, parent_pid: int) -> None:
    services = Services.open(settings, migrate_schema=False)
    server = build_server(services)
    host, port = settings.grpc_host_port
    server.add_insecure_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    await server.start()
    for name in ("", *SERVICES):
        await server.health.set(name, health_pb2.HealthCheckResponse.SERVING)  # type: ignore[attr-defined]
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

"""Start the server process: prepare shared state once, then hand the socket to Granian."""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import socket

from granian import Granian
from granian.constants import Interfaces, RuntimeModes

from flywheel.cache.bootstrap import first_start
from flywheel.cache.services import Services
from flywheel.config import Settings, settings_for_worker

log = logging.getLogger(__name__)


class AddressInUse(Exception):
    pass


def _check_free(host: str, port: int, what: str) -> None:
    """Granian binds with SO_REUSEPORT, so a second server on a taken port would start and
    silently split traffic with the first; refuse instead."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as e:
            raise AddressInUse(f"cannot listen for {what} on {host}:{port}: {e.strerror}") \
                from None


def serve(settings: Settings) -> None:
    host, port = settings.host_port
    _check_free(host, port, "HTTP")
    _check_free(*settings.grpc_host_port, "gRPC")
    services = Services.open(settings)
    try:
        first_start(services)
    finally:
        services.close()
    # Counters from every worker process land in one directory, summed on /metrics.
    metrics_dir = settings.data_dir.absolute() / "run" / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # prometheus-client picks its storage when first imported, so nothing that imports it
    # may load in this process before the directory is set; workers inherit the choice.
    from flywheel.server.grpc_server import run_grpc
    os.environ.update(settings_for_worker(settings))
    log.info("serving on %s (%d workers), data in %s", settings.base_url, settings.workers,
             settings.data_dir.absolute())
    grpc_process = multiprocessing.get_context("spawn").Process(
        target=run_grpc, args=(settings.model_dump_json(), os.getpid()), name="flywheel-grpc",
        daemon=True)
    grpc_process.start()
    try:
        _run_http(settings, host, port)
    finally:
        grpc_process.terminate()
        grpc_process.join(10)


def _run_http(settings: Settings, host: str, port: int) -> None:
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

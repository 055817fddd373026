"""Start the server process: prepare shared state once, then hand the socket to Granian."""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil

from granian import Granian
from granian.constants import Interfaces, RuntimeModes

from flywheel.cache.bootstrap import first_start
from flywheel.cache.services import Services
from flywheel.config import Settings, settings_for_worker

log = logging.getLogger(__name__)


def serve(settings: Settings) -> None:
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
    host, port = settings.host_port
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

"""Start the server: check the ports, prepare shared state once, then become the
supervisor that runs the HTTP workers and the gRPC process."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
from types import FrameType

from flywheel.app.bootstrap import first_start
from flywheel.app.services import Services
from flywheel.app.settings import Settings, settings_for_worker
from flywheel.server.lifecycle import STOP_SIGNALS, block_stop_signals

log = logging.getLogger(__name__)


class AddressInUse(Exception):
    pass


def _check_free(host: str, port: int, what: str) -> None:
    """The HTTP workers bind with SO_REUSEPORT, so a second server on a taken port would start
    and silently split traffic with the first; refuse instead."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Connections of a previous server lingering in TIME_WAIT are no obstacle; a
        # listening socket still is.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise AddressInUse(f"cannot listen for {what} on {host}:{port}: {e.strerror}") \
                from None


class _StopBeforeServing:
    """A stop signal during the first start is remembered, and the server then exits 0
    instead of starting to serve: first start (migrations included) is not interrupted
    half-way. A second signal ends the process at once."""

    def __init__(self) -> None:
        self.signal: int | None = None
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, sig: int, _frame: FrameType | None) -> None:
        if self.signal is not None:
            os._exit(128 + sig)
        self.signal = sig


def serve(settings: Settings) -> None:
    stop = _StopBeforeServing()
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
    os.environ.update(settings_for_worker(settings))
    # From here until the supervisor handles them, stop signals wait (the mask survives
    # exec); a signal that came during first start stops us here.
    block_stop_signals()
    if stop.signal is not None:
        log.info("%s during start-up: not serving", signal.Signals(stop.signal).name)
        raise SystemExit(0)
    log.info("serving on %s (%d workers), data in %s; drains for at most %gs on SIGTERM",
             settings.base_url, settings.workers, settings.data_dir.absolute(),
             settings.drain_timeout)
    sys.stdout.flush()
    sys.stderr.flush()
    # The supervisor only watches processes, so it starts afresh without the database and
    # migration stack this process loaded for the first start: that stays out of memory.
    os.execv(sys.executable, [sys.executable, "-m", "flywheel.server.supervisor"])

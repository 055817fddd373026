"""One HTTP worker process: the app on Granian's embedded server, started and drained here.

The supervisor starts N of these (``python -m flywheel.server.http_worker INDEX``); each
binds the HTTP port itself (SO_REUSEPORT: the kernel spreads connections over them).
Running Granian embedded, one server per process of ours, rather than letting Granian fork
its own workers, puts every process and every signal under one supervisor: Granian's forked
workers inherit its main process's signal handlers while they start, so a SIGTERM arriving
then was swallowed and the worker served on forever after its parent had stopped; and its
shutdown waits on workers without a bound and cannot tell a load balancer first.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import uvloop

from flywheel.app.settings import Settings, settings_from_worker_env
from flywheel.server.lifecycle import StopRequest, SupervisorLink

log = logging.getLogger("flywheel.server.http_worker")  # not __name__: "__main__" under -m

# Granian's default backlog with N workers, and its per-worker share of concurrent requests.
BACKLOG = 1024


class _NotExperimental(logging.Filter):
    # Granian warns on every start that the embedded server is experimental: chosen with
    # that known, it is noise in each worker's start.
    def filter(self, record: logging.LogRecord) -> bool:
        return "experimental" not in record.getMessage()


async def _serve(index: int, settings: Settings) -> int:
    stop = StopRequest(f"HTTP worker {index}", settings.drain_timeout)
    link = SupervisorLink.from_env()
    stop.install(link)
    # Imported only now, with the stop signals handled: this is the slow part of a start.
    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.log import logger as granian_log
    from granian.server.embed import Server

    from flywheel.server.app import create_app
    from flywheel.server.drain import DrainGate
    from flywheel.server.tls_front import Listening

    gate = DrainGate(create_app(settings))
    listening = Listening(settings)   # plain, TLS by Granian, or the client-certificate front
    server = Server(listening.wrap(gate), **listening.granian(), interface=Interfaces.ASGI,
                    backlog=BACKLOG, backpressure=BACKLOG // settings.workers,
                    log_access=False,
                    log_level=LogLevels.debug if settings.log_level == "debug" else
                    LogLevels.warning)
    granian_log.addFilter(_NotExperimental())
    # Called once the socket listens, before Granian's accept loop runs: connections from
    # here on queue for it.
    server.on_startup(link.report_serving)
    serving = asyncio.create_task(server.serve())
    await listening.start()
    stopping = asyncio.create_task(stop.requested.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if serving.done():
        stopping.cancel()
        log.error("HTTP worker %d: the server ended by itself (%s)", index,
                  serving.exception() or "no error")
        return 1
    listening.close()
    await gate.drain(stop.remaining())
    # Nothing runs in the app any more; Granian may still be sending a file it was handed.
    # After an abort that leaves half a second before the supervisor's kill.
    server.stop()  # type: ignore[no-untyped-call]
    try:
        await asyncio.wait_for(serving, max(stop.remaining(), 0.5))
    except TimeoutError:
        log.warning("HTTP worker %d: responses still being sent at the drain timeout were "
                    "cut off", index)
    return 0


def main() -> None:
    settings = settings_from_worker_env()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(uvloop.run(_serve(int(sys.argv[1]), settings)))


if __name__ == "__main__":
    main()

"""The long-lived parent: it starts the HTTP workers and the gRPC process, restarts any that
dies, tells ``/readyz`` whether all of them serve, and stops them all on a signal.

Run as ``python -m flywheel.server.supervisor`` by ``flywheel serve`` once the data dir is
ready, with the stop signals blocked (they wait for the handlers below); settings arrive
validated in the environment. It imports neither the database nor grpc nor Granian, so it
costs little memory beside the children that do the work.

Stopping: the first SIGTERM or SIGINT marks the server not ready, passes SIGTERM to every
child and waits for them to drain (each aborts what still runs at the drain timeout and
exits); a child still there shortly after that is killed. Exit status 0. A second signal
kills the children at once and exits with 128 + the signal's number.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass

from flywheel.app.settings import Settings, settings_from_worker_env
from flywheel.server import readiness
from flywheel.server.lifecycle import (
    KILL_AFTER_ABORT,
    LIFELINE_FD_ENV,
    READY_FD_ENV,
    STOP_SIGNALS,
    stop_signals_blocked,
    unblock_stop_signals,
)

log = logging.getLogger("flywheel.server.supervisor")  # not __name__: "__main__" under -m

# A child that dies is started again after a pause that doubles with each death in a row
# (a crash loop costs little and floods no log), up to a bound; one that served for a while
# before dying starts from the shortest pause again.
FIRST_RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
STABLE_AFTER = 60.0


@dataclass
class Child:
    name: str
    module: str
    args: tuple[str, ...] = ()
    proc: asyncio.subprocess.Process | None = None
    serving: bool = False
    restarting: bool = False
    failures: int = 0  # deaths in a row

    @property
    def state(self) -> str:
        if self.serving:
            return "serving"
        return "down, restarting" if self.restarting else "starting"


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.drain = settings.drain_timeout
        self.children = [Child(f"HTTP worker {i}", "flywheel.server.http_worker", (str(i),))
                         for i in range(1, settings.workers + 1)]
        self.children.append(Child("gRPC listener", "flywheel.server.grpc.process"))
        run_dir = settings.data_dir.absolute() / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.readiness_file = run_dir / "readiness.json"
        self.stopping = asyncio.Event()
        self.exit_status = 0
        self.hurry = False  # a second signal: kill rather than drain
        # Never written, only held open: children read end-of-file on the other end once
        # this process is gone, however it ended.
        self._lifeline_r, self._lifeline_w = os.pipe()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        self._publish()
        unblock_stop_signals()  # a signal that came during start-up is handled now
        tasks = [asyncio.create_task(self._keep_running(child)) for child in self.children]
        await self.stopping.wait()
        _, running = await asyncio.wait(tasks, timeout=self.drain + KILL_AFTER_ABORT)
        if running:
            for child in self.children:
                if child.proc is not None and child.proc.returncode is None:
                    log.error("%s (pid %d) did not stop in time: killing it", child.name,
                              child.proc.pid)
                    child.proc.kill()
            await asyncio.wait(running)
            self.exit_status = self.exit_status or 1
        self.readiness_file.unlink(missing_ok=True)
        log.info("stopped")
        return self.exit_status

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self.stopping.is_set():
            log.warning("%s again: stopping at once", name)
            self.exit_status = 128 + sig
            self.hurry = True
            for child in self.children:
                self._stop(child)
            return
        log.info("%s: draining (at most %gs), then stopping", name, self.drain)
        self.stopping.set()
        self._publish()
        for child in self.children:
            self._stop(child)

    def _stop(self, child: Child) -> None:
        if child.proc is not None and child.proc.returncode is None:
            child.proc.send_signal(signal.SIGKILL if self.hurry else signal.SIGTERM)

    async def _keep_running(self, child: Child) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopping.is_set():
            started = loop.time()
            status = await self._run_once(child)
            child.serving = False
            if self.stopping.is_set():
                break
            if loop.time() - started >= STABLE_AFTER:
                child.failures = 0
            delay = min(MAX_RESTART_DELAY, FIRST_RESTART_DELAY * 2 ** child.failures)
            child.failures += 1
            child.restarting = True
            self._publish()
            log.warning("%s exited unexpectedly (%s); starting it again in %gs", child.name,
                        _describe(status), delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)

    async def _run_once(self, child: Child) -> int:
        ready_r, ready_w = os.pipe()
        env = {**os.environ, LIFELINE_FD_ENV: str(self._lifeline_r),
               READY_FD_ENV: str(ready_w), readiness.READINESS_FILE_ENV: str(self.readiness_file)}
        # Born with the stop signals blocked: it unblocks them once it handles them.
        with stop_signals_blocked():
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", child.module, *child.args, env=env,
                pass_fds=(self._lifeline_r, ready_w))
        os.close(ready_w)
        child.proc = proc
        if self.stopping.is_set():  # the signal came while it was being started
            self._stop(child)
        waiting = asyncio.create_task(_read_ready(ready_r))
        exiting = asyncio.create_task(proc.wait())
        await asyncio.wait({waiting, exiting}, return_when=asyncio.FIRST_COMPLETED)
        if waiting.done() and waiting.result():
            child.serving, child.restarting = True, False
            log.info("%s (pid %d) serving", child.name, proc.pid)
            self._publish()
        else:
            waiting.cancel()
        status = await exiting
        os.close(ready_r)
        return status

    def _publish(self) -> None:
        if self.stopping.is_set():
            state = readiness.Readiness(False, readiness.SHUTTING_DOWN)
        else:
            waiting = [f"{child.name} {child.state}" for child in self.children
                       if not child.serving]
            state = readiness.Readiness(not waiting, "; ".join(waiting))
        readiness.publish(self.readiness_file, state)


async def _read_ready(fd: int) -> bool:
    """True once the child wrote that it serves; False if it closed the pipe (exited)."""
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await readable
    finally:
        loop.remove_reader(fd)
    return bool(os.read(fd, 1))


def _describe(status: int) -> str:
    return f"killed by {signal.Signals(-status).name}" if status < 0 else f"status {status}"


def main() -> None:
    settings = settings_from_worker_env()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(asyncio.run(Supervisor(settings).run()))


if __name__ == "__main__":
    main()

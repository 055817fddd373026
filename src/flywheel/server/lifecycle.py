"""How the server's processes start and stop, shared by the supervisor and its children.

* SIGTERM and SIGINT ask for a drain: stop taking new work, let what runs finish within the
  drain timeout, abort the rest (its cleanup runs), exit 0. Only the supervisor acts on a
  second signal (it kills its children at once); a child may get each signal twice (from
  the process group and from the supervisor), so it ignores all but the first.
* A child is born with the stop signals blocked and unblocks them once its handlers are in
  place: a signal that arrives while it starts waits for it instead of being lost or killing
  it half-started. The signal mask survives fork and exec; handlers do not.
* A child holds the read end of a pipe whose only writer is the supervisor (the lifeline):
  when the supervisor is gone, even after SIGKILL, the pipe reads end-of-file and the child
  drains as on SIGTERM. It reports that it serves by writing to a second pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

# After the drain timeout, work still running is cancelled and gets this long to clean up
# (remove its temp files) before its process exits; the supervisor kills a child that is
# still there a second later. With the default drain timeout, 25 + 3 + 1 s stays inside
# Kubernetes' default 30 s grace period.
ABORT_GRACE = 3.0
KILL_AFTER_ABORT = ABORT_GRACE + 1.0

LIFELINE_FD_ENV = "_FLYWHEEL_LIFELINE_FD"
READY_FD_ENV = "_FLYWHEEL_READY_FD"


def block_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def unblock_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextlib.contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Defer stop signals (they stay pending, none is lost); a child started meanwhile
    inherits the blocked mask."""
    block_stop_signals()
    try:
        yield
    finally:
        unblock_stop_signals()


def arm_watchdog(seconds: float) -> None:
    """End this process after ``seconds`` even if it is stuck where no Python runs: nothing
    handles SIGALRM, so the kernel terminates the process. The last resort of a child
    whose supervisor is gone; normally the drain ends long before."""
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))


class SupervisorLink:
    """A child's end of the two pipes to its supervisor; inert when run on its own."""

    def __init__(self, lifeline_fd: int | None, ready_fd: int | None) -> None:
        self._lifeline_fd = lifeline_fd
        self._ready_fd = ready_fd

    @classmethod
    def from_env(cls) -> SupervisorLink:
        def fd(name: str) -> int | None:
            value = os.environ.pop(name, None)
            return int(value) if value else None

        # Popped: a process this child starts (nix, a helper) must not inherit the numbers.
        return cls(fd(LIFELINE_FD_ENV), fd(READY_FD_ENV))

    def report_serving(self) -> None:
        if self._ready_fd is not None:
            with contextlib.suppress(OSError):  # a supervisor gone away reads nothing
                os.write(self._ready_fd, b"1")
            os.close(self._ready_fd)
            self._ready_fd = None

    def watch(self, loop: asyncio.AbstractEventLoop, on_gone: Callable[[], None]) -> None:
        """Call ``on_gone`` once the supervisor has exited, however it ended."""
        fd = self._lifeline_fd
        if fd is None:
            return
        os.set_blocking(fd, False)

        def readable() -> None:
            with contextlib.suppress(BlockingIOError):
                if not os.read(fd, 1):  # the supervisor never writes: only end-of-file
                    loop.remove_reader(fd)
                    on_gone()

        loop.add_reader(fd, readable)


class StopRequest:
    """The first stop signal, or the supervisor going away, starts this process's drain."""

    def __init__(self, name: str, drain: float) -> None:
        self.name = name
        self.drain = drain
        self.requested = asyncio.Event()
        self.deadline = math.inf

    def install(self, link: SupervisorLink) -> None:
        """Handle the stop signals from now on, then let through any that waited."""
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self.request, signal.Signals(sig).name)
        link.watch(loop, lambda: self.request("the supervisor is gone"))
        unblock_stop_signals()

    def request(self, why: str) -> None:
        if self.requested.is_set():
            return
        self.deadline = asyncio.get_running_loop().time() + self.drain
        arm_watchdog(self.drain + KILL_AFTER_ABORT + 1.0)
        log.info("%s: %s draining (at most %gs)", why, self.name, self.drain)
        self.requested.set()

    def remaining(self) -> float:
        return max(0.0, self.deadline - asyncio.get_running_loop().time())

"""``flywheel watch-store``: push paths as Nix registers them, in debounced batches, until
told to stop; then push what is still queued and return the totals."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from flywheel.client.errors import ClientError
from flywheel.client.storedb import StoreDb
from flywheel.client.summary import PushSummary

POLL_SECONDS = 0.5
QUIET_SECONDS = 1.0     # a build registers its outputs in a burst; push once it settles
MAX_WAIT_SECONDS = 10.0  # but never sit on paths for long during a long busy stretch
RETRY_SECONDS = 5.0


def abort_at_once(signum: int) -> NoReturn:
    """End the process now, by the signal's own default action, for a second stop signal.

    Unwinding would wait for the uploads in flight, and one blocked on a server that stopped
    reading holds its thread for the whole write timeout (minutes). The ``nix-store --dump``
    processes feeding uploads see their pipe close and end on their next write."""
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
    os._exit(128 + signum)  # not reached: the default action of SIGINT and SIGTERM ends us


def wanted(path: str) -> bool:
    # Derivations are build recipes: substituters never fetch them, and they would
    # double the number of uploads for nothing.
    return not path.endswith(".drv")


@dataclass
class Batcher:
    quiet: float = QUIET_SECONDS
    max_wait: float = MAX_WAIT_SECONDS
    paths: dict[str, None] = field(default_factory=dict)   # ordered set
    first_at: float | None = None
    last_at: float | None = None
    not_before: float = 0.0

    def add(self, paths: list[str], now: float) -> None:
        if not paths:
            return
        self.paths.update(dict.fromkeys(paths))
        self.first_at = self.first_at if self.first_at is not None else now
        self.last_at = now

    def due(self, now: float) -> bool:
        if not self.paths or now < self.not_before:
            return False
        assert self.first_at is not None and self.last_at is not None
        return now - self.last_at >= self.quiet or now - self.first_at >= self.max_wait

    def take(self) -> list[str]:
        paths = list(self.paths)
        self.paths.clear()
        self.first_at = self.last_at = None
        return paths

    def put_back(self, paths: list[str], now: float, delay: float) -> None:
        self.add(paths, now)
        self.not_before = now + delay


PushFn = Callable[[list[str]], PushSummary]


class StoreWatcher:
    def __init__(self, db: StoreDb, push: PushFn, *, on_error: Callable[[str], None],
                 poll: float = POLL_SECONDS, batcher: Batcher | None = None) -> None:
        self.db = db
        self.push = push
        self.on_error = on_error
        self.poll = poll
        self.batcher = batcher or Batcher()
        self.total = PushSummary()
        self.last_id = db.last_id()

    def _collect(self, now: float) -> None:
        new = self.db.paths_after(self.last_id)
        if new:
            self.last_id = new[-1][0]
            self.batcher.add([p for _, p in new if wanted(p)], now)

    def _flush(self, *, final: bool) -> None:
        # Paths garbage-collected since they appeared cannot be pushed, or asked about.
        batch = [p for p in self.batcher.take() if os.path.lexists(p)]
        if not batch:
            return
        try:
            self.total.add(self.push(batch))
        except ClientError as e:
            if final:
                self.on_error(f"could not push {len(batch)} paths: {e}")
                self.total.failed.update(dict.fromkeys(batch, str(e)))
                return
            self.on_error(f"could not push {len(batch)} paths, retrying in "
                          f"{RETRY_SECONDS:.0f}s: {e}")
            self.batcher.put_back(batch, time.monotonic(), RETRY_SECONDS)

    def run(self, stop: threading.Event) -> PushSummary:
        """Watch until ``stop`` is set, then push what is queued (nothing is waited for)."""
        while not stop.is_set():
            now = time.monotonic()
            self._collect(now)
            if self.batcher.due(now):
                self._flush(final=False)
            stop.wait(self.poll)
        self._collect(time.monotonic())
        self._flush(final=True)
        return self.total

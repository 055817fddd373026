"""An HTTP worker's drain, as an ASGI wrapper around the app.

While draining, the worker keeps its listener open so that probes still get an answer
(``/readyz`` says 503, which is how a load balancer learns to stop sending), and it answers
every other new request 503 with ``Connection: close``: clients retry elsewhere or later,
and no new upload starts. Requests already running go on until the drain timeout; those
still running then are cancelled, so their own cleanup runs (temp files removed, nothing
half-visible), and are answered 503 if no response had begun. The listener closes once the
worker has nothing left in flight.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from flywheel.server import readiness
from flywheel.server.lifecycle import ABORT_GRACE

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

PROBE_PATHS = frozenset({"/healthz", "/readyz"})

_SHUTTING_DOWN = json.dumps({
    "code": 503, "error": "ServiceUnavailable",
    "message": "the server is shutting down; retry in a moment"}).encode()
_SHUTTING_DOWN_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_SHUTTING_DOWN)).encode()),
    (b"connection", b"close"),
    (b"retry-after", b"1"),
]


async def _refuse(send: Send) -> None:
    await send({"type": "http.response.start", "status": 503,
                "headers": _SHUTTING_DOWN_HEADERS})
    await send({"type": "http.response.body", "body": _SHUTTING_DOWN})


class DrainGate:
    def __init__(self, app: App) -> None:
        self._app = app
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False
        self._aborting = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if self._draining and scope["path"] not in PROBE_PATHS:
            await _refuse(send)
            return
        task = asyncio.current_task()
        assert task is not None
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        self._in_flight.add(task)
        self._idle.clear()
        try:
            await self._app(scope, receive, send_tracked)
        except asyncio.CancelledError:
            if not self._aborting:
                raise
            # Our own cancellation at the drain timeout: the app has cleaned up; answer
            # for it rather than let the server turn the cancellation into a 500.
            task.uncancel()
            if not started:
                await _refuse(send)
        finally:
            self._in_flight.discard(task)
            if not self._in_flight:
                self._idle.set()

    async def drain(self, timeout: float) -> None:
        """Refuse new work, give what runs ``timeout`` seconds, then abort the rest."""
        self._draining = True
        readiness.begin_draining()
        if await self._settled(timeout):
            return
        log.warning("drain timeout: aborting the %d requests still running",
                    len(self._in_flight))
        self._aborting = True
        for task in self._in_flight:
            task.cancel()
        if not await self._settled(ABORT_GRACE):
            log.error("%d aborted requests did not end within %gs", len(self._in_flight),
                      ABORT_GRACE)

    async def _settled(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

"""What every per-cache route shares: the caller, the one authorization path, blocking work
kept off the event loop, and one answer for every refusal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from flywheel.app.services import Services
from flywheel.auth.principal import Principal
from flywheel.server import metrics
from flywheel.server.access import Access
from flywheel.server.blocking import Offload
from flywheel.server.errors import answer
from flywheel.server.responses import (
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    TrackedReceive,
    header,
    send_error,
)

# After refusing an upload early, read up to this much of its body so the connection can
# serve the client's next request; past it, close the connection instead.
_DRAIN_LIMIT = 4 << 20

Dispatch = Callable[[Receive, Send], Awaitable[int]]


class CacheRoutes:
    def __init__(self, services: Services, access: Access, offload: Offload) -> None:
        self.services = services
        self.access = access
        self.offload = offload

    async def respond(self, scope: Scope, receive: Receive, send: Send, route: str,
                      dispatch: Dispatch) -> None:
        """Run a route, turning every refusal into a JSON error and counting every outcome."""
        method = scope["method"]
        tracked = TrackedReceive(receive, self.services.settings.body_idle_timeout)
        status = 500
        try:
            status = await dispatch(tracked, send)
        except ClientDisconnected:
            status = 499
        except Exception as e:  # every failure gets an answer; ``answer`` logs the unforeseen
            status, message, extra = answer(e)
            if method not in ("GET", "HEAD") and not await tracked.drain(_DRAIN_LIMIT, 1.0):
                extra.append((b"connection", b"close"))
            try:
                await send_error(send, status, message, method == "HEAD", extra)
            except Exception:  # a response had begun already: the failure is the answer
                raise e from None
        finally:
            metrics.count(metrics.REQUESTS, route, metrics.method_label(method), str(status))

    def caller(self, scope: Scope) -> Principal:
        value = header(scope, b"authorization")
        return self.access.principal(value.decode("latin-1") if value else None)

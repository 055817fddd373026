"""What every per-cache route shares: who is calling, and may they use this cache."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from flywheel.app.services import Services
from flywheel.auth.access import AccessDenied, Authenticator, authorize
from flywheel.auth.tokens import TokenClaims
from flywheel.cache.bazel.service import BazelError, CacheFull
from flywheel.cache.nix.verify import UploadError
from flywheel.cache.tenancy import Cache
from flywheel.server import metrics
from flywheel.server.responses import (
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    TrackedReceive,
    header,
    send_error,
)

_WWW_AUTH = (b"www-authenticate", b'Basic realm="flywheel"')
# After refusing an upload early, read up to this much of its body so the connection can
# serve the client's next request; past it, close the connection instead.
_DRAIN_LIMIT = 4 << 20

Dispatch = Callable[[Receive], Awaitable[int]]


class CacheRoutes:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.auth = Authenticator(services.signer, services.tokens)

    async def respond(self, scope: Scope, receive: Receive, send: Send, route: str,
                      dispatch: Dispatch) -> None:
        """Run a route, turning refusals into JSON errors and counting every outcome."""
        method = scope["method"]
        head = method == "HEAD"
        tracked = TrackedReceive(receive)
        status = 500
        try:
            status = await dispatch(tracked)
        except ClientDisconnected:
            status = 499
        except (AccessDenied, UploadError, BazelError) as e:
            status, message = (e.status, e.message) if isinstance(e, AccessDenied) else \
                (507 if isinstance(e, CacheFull) else 400, str(e))
            extra = [_WWW_AUTH] if status == 401 else []
            if method not in ("GET", "HEAD") and not await tracked.drain(_DRAIN_LIMIT, 1.0):
                extra.append((b"connection", b"close"))
            await send_error(send, status, message, head, extra)
        finally:
            metrics.count(metrics.REQUESTS, route, metrics.method_label(method), str(status))

    def caller(self, scope: Scope) -> TokenClaims | None:
        value = header(scope, b"authorization")
        return self.auth.caller(value.decode("latin-1") if value else None)

    def cache_for(self, claims: TokenClaims | None, name: str, needed: str) -> Cache:
        """The cache, once the caller may use it that way. Callers without rights on a
        name cannot tell a missing cache from one they may not see."""
        cache = self.services.caches.find(name)
        authorize(claims, name, cache.is_public if cache else None, needed)
        if cache is None:
            raise AccessDenied(404, f"no cache named {name!r}")
        return cache

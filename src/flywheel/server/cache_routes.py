"""What every per-cache route shares: who is calling, and may they use this cache."""

from __future__ import annotations

from flywheel.auth.access import AccessDenied, Authenticator, authorize
from flywheel.auth.tokens import TokenClaims
from flywheel.cache.caches import Cache
from flywheel.cache.services import Services
from flywheel.server.responses import Scope, header


class CacheRoutes:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.auth = Authenticator(services.signer, services.tokens)

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

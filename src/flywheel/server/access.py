"""Who is calling, and may they: every HTTP route and gRPC method comes through here, so
identification and the one authorization call are written once."""

from __future__ import annotations

from dataclasses import dataclass

from flywheel.app.services import Services
from flywheel.auth.authorize import (
    CacheAction,
    CacheResource,
    Resource,
    WorkspaceResource,
    authorize,
    may,
)
from flywheel.auth.principal import Principal
from flywheel.cache.nix.paths import Readable
from flywheel.cache.tenancy import Cache
from flywheel.errors import NotFound
from flywheel.state.names import check_workspace_name


@dataclass(frozen=True)
class Endpoint:
    """A route or method, with the resource and action it needs, declared beside it so
    the route table can be enumerated and every entry checked."""

    methods: tuple[str, ...]
    path: str
    resource: str  # "cache", "tokens", "server", or "none" (liveness, readiness)
    action: str | None  # None only with resource "none"
    label: str  # for metrics
    # Further actions any one of which also allows the call (reading a cache's
    # configuration: pulling from it is enough).
    or_actions: tuple[str, ...] = ()


class Access:
    def __init__(self, services: Services) -> None:
        self.services = services

    def principal(self, authorization: str | None) -> Principal:
        return self.services.auth.from_authorization(authorization)

    def authorize(self, principal: Principal, resource: Resource, action: str) -> None:
        authorize(principal, resource, action)

    def cache(self, principal: Principal, name: str, action: str,
              *or_actions: str) -> Cache:
        """The cache, once the caller may take ``action`` (or one of ``or_actions``) on it.
        Callers without rights on a name cannot tell a missing cache from one they may not
        see."""
        cache = self.services.caches.find(name)
        # Rights are judged as if the cache existed; only a caller with rights on the name
        # learns that it does not.
        as_if = CacheResource(name, cache.is_public if cache else False)
        if not any(may(principal, as_if, a) for a in (action, *or_actions)):
            authorize(principal, as_if, action)
        if cache is None:
            raise NotFound(f"no cache named {name!r}")
        return cache

    def workspace(self, authorization: str | None, name: str,
                  action: str) -> tuple[Principal, str]:
        """The caller and the state workspace ``name``, once the caller may take ``action``
        on it."""
        principal = self.principal(authorization)
        checked = check_workspace_name(name)
        self.authorize(principal, WorkspaceResource(checked), action)
        return principal, checked

    def check_cache(self, principal: Principal, name: str, public: bool | None,
                    action: str) -> None:
        """For lookups that learned the cache's visibility in the same query."""
        authorize(principal, CacheResource(name, public), action)

    @staticmethod
    def readable(principal: Principal) -> Readable:
        """Whether the caller may pull from a cache, for proof of possession."""
        def check(name: str, public: bool) -> bool:
            return may(principal, CacheResource(name, public), CacheAction.PULL)
        return check

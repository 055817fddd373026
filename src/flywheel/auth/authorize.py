"""The one authorization decision: may this principal take this action on this resource?

Every HTTP route and gRPC method names its resource and action and calls ``authorize``;
nothing else decides access."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from flywheel.auth.principal import Principal, Role
from flywheel.errors import Forbidden, NotFound, Unauthenticated


class CacheAction(StrEnum):
    """Attic's permission bits, by their claim names."""

    PULL = "r"
    PUSH = "w"
    DELETE = "d"
    CREATE = "cc"
    CONFIGURE = "cr"
    READ_CONFIG = "cq"
    DESTROY = "cd"


CACHE_ACTION_WORDS = {
    CacheAction.PULL: "pull from", CacheAction.PUSH: "push to",
    CacheAction.DELETE: "delete from", CacheAction.CREATE: "create",
    CacheAction.CONFIGURE: "configure", CacheAction.READ_CONFIG: "read the configuration of",
    CacheAction.DESTROY: "destroy",
}


class WorkspaceAction(StrEnum):
    """Actions on a state workspace, by their claim names."""

    READ = "r"
    WRITE = "w"
    LOCK = "l"
    ADMIN = "a"


WORKSPACE_ACTION_WORDS = {
    WorkspaceAction.READ: "read the state of", WorkspaceAction.WRITE: "write the state of",
    WorkspaceAction.LOCK: "lock", WorkspaceAction.ADMIN: "administer",
}


class ServerAction(StrEnum):
    """Actions on server-wide resources, each needing a role."""

    VIEW = "view"
    OPERATE = "operate"
    ADMINISTER = "administer"


_ROLE_FOR = {ServerAction.VIEW: Role.VIEWER, ServerAction.OPERATE: Role.OPERATOR,
             ServerAction.ADMINISTER: Role.ADMIN}


@dataclass(frozen=True)
class CacheResource:
    name: str
    # None when no such cache exists: a caller without rights on the name is answered as if
    # it existed, so names cannot be probed.
    public: bool | None

    def describe(self) -> str:
        return f"cache {self.name!r}"


@dataclass(frozen=True)
class WorkspaceResource:
    """A state workspace, judged by its name alone: whether it exists is never part of the
    decision, so a caller without rights learns nothing of it."""

    name: str

    def describe(self) -> str:
        return f"workspace {self.name!r}"


@dataclass(frozen=True)
class ServerResource:
    """Something of the whole server: ``tokens``, ``server`` (status, metrics), ``fleet``."""

    name: str

    def describe(self) -> str:
        return self.name


TOKENS = ServerResource("tokens")
SERVER = ServerResource("the server")
FLEET = ServerResource("the fleet")
AUDIT = ServerResource("the audit log")
# One's own sessions and passkeys: any identified caller, whatever its role.
ACCOUNT = ServerResource("your account")

Resource = CacheResource | WorkspaceResource | ServerResource


def authorize(principal: Principal, resource: Resource, action: str) -> None:
    """Return if allowed; raise ``Unauthenticated``, ``Forbidden`` or ``NotFound``."""
    if isinstance(resource, CacheResource):
        _authorize_cache(principal, resource, CacheAction(action))
    elif isinstance(resource, WorkspaceResource):
        _authorize_workspace(principal, resource, WorkspaceAction(action))
    else:
        _authorize_role(principal, resource, ServerAction(action))


def may(principal: Principal, resource: Resource, action: str) -> bool:
    try:
        authorize(principal, resource, action)
    except (Unauthenticated, Forbidden, NotFound):
        return False
    return True


def _authorize_cache(principal: Principal, cache: CacheResource, action: CacheAction) -> None:
    if action is CacheAction.PULL and cache.public:
        return
    if principal.role is not Role.ADMIN and not getattr(
            principal.grants.for_cache(cache.name), action.value):
        words = f"{CACHE_ACTION_WORDS[action]} {cache.describe()}"
        if principal.anonymous:
            raise Unauthenticated(f"authentication required to {words}")
        raise Forbidden(f"{principal.describe()} may not {words}")
    if cache.public is None and action is not CacheAction.CREATE:
        raise NotFound(f"no cache named {cache.name!r}")


def _authorize_workspace(principal: Principal, workspace: WorkspaceResource,
                         action: WorkspaceAction) -> None:
    # No workspace is public: state holds secrets, so anonymous callers are always refused.
    if principal.role is Role.ADMIN or getattr(
            principal.grants.for_workspace(workspace.name), action.value):
        return
    words = f"{WORKSPACE_ACTION_WORDS[action]} {workspace.describe()}"
    if principal.anonymous:
        raise Unauthenticated(f"authentication required to {words}")
    raise Forbidden(f"{principal.describe()} may not {words}")


def _authorize_role(principal: Principal, resource: ServerResource,
                    action: ServerAction) -> None:
    if resource == ACCOUNT and not principal.anonymous:
        return
    needed = _ROLE_FOR[action]
    if principal.role is not None and principal.role >= needed:
        return
    if principal.anonymous:
        raise Unauthenticated(f"authentication required to {action.value} {resource.describe()}")
    raise Forbidden(f"{principal.describe()} may not {action.value} {resource.describe()} "
                    f"(needs the {needed.name.lower()} role)")

"""The kinds of refusal every plane raises. Each front end (HTTP, gRPC, the command line)
maps them in one place; nothing else decides a status code.

A message is written for the caller who receives it: it may name what the caller sent and
what the caller may read, never stored content or caches the caller cannot see."""

from __future__ import annotations


class FlywheelError(Exception):
    """A refused request; ``message`` is safe to show the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(FlywheelError):
    """The request is malformed, or contradicts itself or what it claims."""


class FailedPrecondition(Invalid):
    """Well-formed, but the state it depends on is not there (content not yet uploaded)."""


class OutOfRange(Invalid):
    """An offset or range outside the content."""


class Unauthenticated(FlywheelError):
    """No acceptable credentials for something that needs them."""


class Forbidden(FlywheelError):
    """Credentials that do not allow this action on this resource."""


class NotFound(FlywheelError):
    pass


class Conflict(FlywheelError):
    """The resource exists already, or is held by someone else."""


class Locked(Conflict):
    """A lock held by someone else; ``holder`` is the lock's description as its holder gave
    it (OpenTofu's lock-info JSON), shown only to callers who may take that lock."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


class TooLarge(FlywheelError):
    """More bytes than the server accepts for this request."""


class StorageFull(FlywheelError):
    """No room: a size bound is reached, or the disk is full."""


class TimedOut(FlywheelError):
    """The client stopped sending a request body it had announced."""


class Unavailable(FlywheelError):
    """Something the server depends on cannot be used right now; retrying may succeed."""

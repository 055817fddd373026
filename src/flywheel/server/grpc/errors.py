"""The one place gRPC status codes for refusals are decided: each error kind to a code, and
anything unforeseen to INTERNAL with an error id that is also in the log (never UNKNOWN)."""

from __future__ import annotations

import logging
import uuid

import grpc

from flywheel.errors import (
    Conflict,
    FailedPrecondition,
    FlywheelError,
    Forbidden,
    Invalid,
    Locked,
    NotFound,
    OutOfRange,
    StorageFull,
    TimedOut,
    TooLarge,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger(__name__)

# Most specific first: the first matching kind decides.
_CODES: tuple[tuple[type[FlywheelError], grpc.StatusCode], ...] = (
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (Forbidden, grpc.StatusCode.PERMISSION_DENIED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Locked, grpc.StatusCode.ABORTED),
    (Conflict, grpc.StatusCode.ALREADY_EXISTS),
    (TooLarge, grpc.StatusCode.INVALID_ARGUMENT),
    (OutOfRange, grpc.StatusCode.OUT_OF_RANGE),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (Invalid, grpc.StatusCode.INVALID_ARGUMENT),
    (StorageFull, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (TimedOut, grpc.StatusCode.DEADLINE_EXCEEDED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
)


def code_for(error: FlywheelError) -> grpc.StatusCode:
    return next((code for kind, code in _CODES if isinstance(error, kind)),
                grpc.StatusCode.INVALID_ARGUMENT)


def status_of(error: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(error, FlywheelError):
        return code_for(error), error.message
    error_id = uuid.uuid4().hex[:16]
    log.error("internal error %s", error_id, exc_info=error)
    return grpc.StatusCode.INTERNAL, f"internal error (id {error_id}; the server log has " \
        "the details)"

"""The one place HTTP answers for refusals are decided: each error kind to a status, and
anything unforeseen to a JSON 500 whose error id is also in the log."""

from __future__ import annotations

import json
import logging
import uuid

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
_STATUS: tuple[tuple[type[FlywheelError], int], ...] = (
    (Unauthenticated, 401), (Forbidden, 403), (NotFound, 404), (Locked, 423), (Conflict, 409),
    (TooLarge, 413), (OutOfRange, 416), (FailedPrecondition, 400), (Invalid, 400),
    (StorageFull, 507), (TimedOut, 408), (Unavailable, 503),
)
REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
           405: "MethodNotAllowed", 408: "RequestTimeout", 409: "Conflict",
           411: "LengthRequired", 423: "Locked",
           413: "PayloadTooLarge", 416: "RangeNotSatisfiable", 422: "UnprocessableEntity",
           500: "InternalServerError", 503: "ServiceUnavailable", 507: "InsufficientStorage"}
WWW_AUTHENTICATE = (b"www-authenticate", b'Basic realm="flywheel", Bearer realm="flywheel"')


def error_body(status: int, message: str) -> bytes:
    """Attic's error shape, so its client and ours print the reason."""
    return json.dumps({"code": status, "error": REASONS.get(status, "Error"),
                       "message": message}).encode()


def status_for(error: FlywheelError) -> int:
    return next((status for kind, status in _STATUS if isinstance(error, kind)), 400)


def answer(error: BaseException) -> tuple[int, str, list[tuple[bytes, bytes]]]:
    """(status, message, extra headers) for any exception a handler let escape."""
    if isinstance(error, FlywheelError):
        status = status_for(error)
        return status, error.message, [WWW_AUTHENTICATE] if status == 401 else []
    error_id = uuid.uuid4().hex[:16]
    log.error("internal error %s", error_id, exc_info=error)
    return 500, f"internal error (id {error_id}; the server log has the details)", []

"""What a failing disk means to a client: full (507) or unavailable (503), never a crash."""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import Iterator

from flywheel.errors import StorageFull, Unavailable

log = logging.getLogger(__name__)

_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@contextlib.contextmanager
def storage_faults(what: str) -> Iterator[None]:
    """Translate OS errors while ``what`` is done into the server's error kinds; a missing
    file (FileNotFoundError) is left to the caller, who knows what absence means."""
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as e:
        log.error("storage fault while %s: %s", what, e)
        if e.errno in _FULL:
            raise StorageFull("the server's storage is full") from None
        raise Unavailable("the server's storage cannot be written right now") from None

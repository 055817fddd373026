"""Sending stored files: zero-copy through the server where it can, ``Range`` otherwise."""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

from flywheel.server import metrics
from flywheel.server.responses import Scope, Send, header, send_error

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_READ_CHUNK = 1 << 20


def _parse_range(value: bytes, size: int) -> tuple[int, int] | bool | None:
    """(start, end inclusive) for one satisfiable range; False if unsatisfiable; None to
    ignore (malformed or several ranges), which RFC 9110 allows by sending it all."""
    m = _RANGE.fullmatch(value.decode("latin-1").strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):
        n = int(m.group(2))
        return (max(0, size - n), size - 1) if n and size else False
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        return False
    return start, min(end, size - 1)


async def send_file(scope: Scope, send: Send, path: str, size: int, head: bool,
                    cache: str, content_type: bytes) -> int:
    headers: list[tuple[bytes, bytes]] = [(b"content-type", content_type),
                                          (b"accept-ranges", b"bytes")]
    wanted = header(scope, b"range")
    span = _parse_range(wanted, size) if wanted else None
    if span is False:
        await send_error(send, 416, "requested range not satisfiable", head,
                         [(b"content-range", f"bytes */{size}".encode())])
        return 416
    status, start, end = 200, 0, size - 1
    if isinstance(span, tuple):
        status, (start, end) = 206, span
        headers.append((b"content-range", f"bytes {start}-{end}/{size}".encode()))
    length = end - start + 1
    headers.append((b"content-length", str(length).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if head:
        await send({"type": "http.response.body", "body": b""})
        return status
    metrics.count(metrics.BYTES_OUT, cache, amount=length)
    extensions: dict[str, Any] = scope.get("extensions") or {}
    if status == 200 and "http.response.pathsend" in extensions:
        # The server sends the file itself (zero-copy where it can).
        await send({"type": "http.response.pathsend", "path": path})
        return status
    loop = asyncio.get_running_loop()
    fd = os.open(path, os.O_RDONLY)
    try:
        pos, remaining = start, length
        while remaining > 0:
            chunk = await loop.run_in_executor(None, os.pread, fd, min(_READ_CHUNK, remaining),
                                               pos)
            if not chunk:
                raise OSError(f"{path} shrank while being served")
            pos += len(chunk)
            remaining -= len(chunk)
            await send({"type": "http.response.body", "body": chunk,
                        "more_body": remaining > 0})
    finally:
        os.close(fd)
    return status


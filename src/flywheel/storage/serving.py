"""How stored content reaches a client when no local file can be sent: a redirect to a
presigned URL, or bytes streamed through the server. Either is decided only once the
content is known to be there, so a missing object is an error before the first byte."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Redirect:
    url: str


@dataclass
class Stream:
    size: int
    # Each call returns the next piece, b"" at the end; called off the event loop.
    read: Callable[[], bytes]
    close: Callable[[], None]


def stream_of(pieces: Iterator[bytes], size: int, close: Callable[[], None]) -> Stream:
    def read() -> bytes:
        return next(pieces, b"")

    return Stream(size, read, close)

"""Minimal ASGI response helpers for the hot Nix routes, which skip framework routing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from flywheel.errors import TimedOut
from flywheel.server.errors import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

class ClientDisconnected(Exception):
    pass


async def send_bytes(send: Send, status: int, body: bytes, content_type: bytes | None = None,
                     extra: list[tuple[bytes, bytes]] | None = None, head: bool = False) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type:
        headers.append((b"content-type", content_type))
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def send_error(send: Send, status: int, message: str, head: bool = False,
                     extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send_bytes(send, status, error_body(status, message), b"application/json",
                     extra, head)


class TrackedReceive:
    """Wraps ``receive`` to know whether the request body has been read to its end, and to
    give up on a body that stops arriving (``idle_timeout`` seconds without a message)."""

    def __init__(self, receive: Receive, idle_timeout: float) -> None:
        self._receive = receive
        self._idle_timeout = idle_timeout
        self.body_done = False

    async def __call__(self) -> Message:
        if self.body_done:
            return await self._receive()   # only a disconnect is left to wait for
        try:
            async with asyncio.timeout(self._idle_timeout):
                msg = await self._receive()
        except TimeoutError:
            raise TimedOut(f"no part of the request body arrived for "
                           f"{self._idle_timeout:g} s") from None
        if msg["type"] == "http.disconnect" or not msg.get("more_body", False):
            self.body_done = True
        return msg

    async def drain(self, limit: int, seconds: float) -> bool:
        """Discard what is left of the body, up to ``limit`` bytes and for at most
        ``seconds`` (a client may wait for our answer before sending more); True if the
        whole body was read."""
        seen = 0
        try:
            async with asyncio.timeout(seconds):
                while not self.body_done and seen <= limit:
                    seen += len((await self()).get("body", b""))
        except (TimeoutError, TimedOut):
            return False
        return self.body_done


async def body_chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = msg.get("body", b"")
        if chunk:
            yield chunk
        if not msg.get("more_body", False):
            return


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it exceeds ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    async for chunk in body_chunks(receive):
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


def header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return bytes(v)
    return None

"""Blocking work (hashing, decompression, file I/O, database writes) runs on a bounded
thread pool, never on the event loop: a 1 GiB upload must not delay a narinfo lookup.
hashlib, zstd and xz release the GIL, so an upload also gets more than one core."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

# While the thread is busy, body pieces are joined up to this size: large enough that the
# hand-over costs nothing next to the work, small enough to keep memory flat.
BATCH_BYTES = 1 << 20
_QUEUE_DEPTH = 4
_POLL_SECONDS = 1.0


class _Aborted(Exception):
    """The request went away while its body was being consumed."""


class Offload:
    def __init__(self, max_workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="flywheel-blocking")

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    async def consume(self, chunks: AsyncIterator[bytes],
                      fn: Callable[[Iterator[bytes]], T]) -> T:
        """Run ``fn`` on the pool with the request body as a plain iterator, while the event
        loop keeps receiving it. An error from ``chunks`` (the client went away) is raised
        inside ``fn``'s iteration, so ``fn`` cleans up as for any failed upload."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(_QUEUE_DEPTH)
        aborted = threading.Event()

        def body() -> Iterator[bytes]:
            while True:
                future = asyncio.run_coroutine_threadsafe(queue.get(), loop)
                while True:
                    try:
                        item = future.result(_POLL_SECONDS)
                        break
                    except TimeoutError:
                        if aborted.is_set():
                            future.cancel()
                            raise _Aborted from None
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item

        async def pump() -> None:
            # A piece goes to the thread at once while it keeps up; while it is busy, what
            # arrives meanwhile is joined into larger pieces (never waiting for more bytes:
            # a client may wait for an answer before it sends the rest).
            parts: list[bytes] = []
            size = 0
            try:
                async for chunk in chunks:
                    parts.append(chunk)
                    size += len(chunk)
                    if not queue.full():
                        queue.put_nowait(b"".join(parts))
                        parts, size = [], 0
                    elif size >= BATCH_BYTES:
                        await queue.put(b"".join(parts))
                        parts, size = [], 0
                if parts:
                    await queue.put(b"".join(parts))
                await queue.put(None)
            except Exception as e:
                await queue.put(e)

        work = loop.run_in_executor(self._pool, fn, body())
        feeding = asyncio.create_task(pump())
        try:
            return await work
        finally:
            feeding.cancel()
            aborted.set()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

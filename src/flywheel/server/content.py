"""Answering with content that is not a local file: a redirect to the bucket, or a stream
read off the event loop. The caller has checked the content is there; a stream that ends
early (storage lost it mid-way) aborts the connection rather than end a short 200."""

from __future__ import annotations

from flywheel.server import metrics
from flywheel.server.blocking import Offload
from flywheel.server.responses import Scope, Send
from flywheel.storage.serving import Redirect, Stream


async def send_content(scope: Scope, send: Send, offload: Offload, content: Redirect | Stream,
                       head: bool, cache: str, content_type: bytes) -> int:
    if isinstance(content, Redirect):
        await send({"type": "http.response.start", "status": 302, "headers": [
            (b"location", content.url.encode()), (b"content-length", b"0"),
            (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": b""})
        return 302
    try:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", content_type), (b"content-length", str(content.size).encode())]})
        if head or not content.size:
            await send({"type": "http.response.body", "body": b""})
            return 200
        metrics.count(metrics.BYTES_OUT, cache, amount=content.size)
        sent = 0
        while sent < content.size:
            piece = await offload.run(content.read)
            if not piece:
                raise OSError(f"content ended after {sent} of {content.size} bytes")
            sent += len(piece)
            await send({"type": "http.response.body", "body": piece,
                        "more_body": sent < content.size})
        if sent > content.size:
            raise OSError(f"content is longer than its {content.size} bytes")
        return 200
    finally:
        await offload.run(content.close)

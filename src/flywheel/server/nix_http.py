"""The Nix binary cache protocol under /<cache>/: nix-cache-info, narinfo, nar.

These are the hottest routes (every substitution starts with a narinfo per path), so they
are plain ASGI: one regex, one indexed query, one send.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from typing import Any

from flywheel.auth.access import AccessDenied, Authenticator, authorize
from flywheel.auth.tokens import TokenClaims
from flywheel.cache.caches import Cache
from flywheel.cache.paths import NAR_FILE_NAME, NarFile, nar_url
from flywheel.cache.services import Services
from flywheel.cache.verify import UploadError
from flywheel.nix.narinfo import MAX_NARINFO_BYTES
from flywheel.server import metrics
from flywheel.server.responses import (
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    body_chunks,
    header,
    read_body,
    send_bytes,
    send_error,
)

log = logging.getLogger(__name__)

ROUTE = re.compile(
    r"/([a-z0-9][a-z0-9._-]{0,49})/(?:(nix-cache-info)|([^/]+)\.narinfo|nar/([^/]+))")
_HASH_PART = re.compile(r"[0123456789abcdfghijklmnpqrsvwxyz]{32}")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
NARINFO_TYPE = b"text/x-nix-narinfo"
CACHE_INFO_TYPE = b"text/x-nix-cache-info"
_WWW_AUTH = [(b"www-authenticate", b'Basic realm="flywheel"')]
_READ_CHUNK = 1 << 20


class NixHandler:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.auth = Authenticator(services.signer, services.tokens)

    async def __call__(self, scope: Scope, receive: Receive, send: Send,
                       m: re.Match[str]) -> None:
        method = scope["method"]
        head = method == "HEAD"
        route = "cache-info" if m.group(2) else "narinfo" if m.group(3) is not None else "nar"
        status = 500
        try:
            status = await self._dispatch(scope, receive, send, m, method, route)
        except AccessDenied as e:
            status = e.status
            await send_error(send, e.status, e.message, head,
                             _WWW_AUTH if e.status == 401 else None)
        except UploadError as e:
            status = 400
            await send_error(send, 400, str(e))
        except ClientDisconnected:
            status = 499
        finally:
            metrics.REQUESTS.labels(route, method, str(status)).inc()

    def _caller(self, scope: Scope) -> TokenClaims | None:
        value = header(scope, b"authorization")
        return self.auth.caller(value.decode("latin-1") if value else None)

    def _cache_for(self, claims: TokenClaims | None, name: str, needed: str) -> Cache:
        """The cache, once the caller may use it that way (enumeration-safe)."""
        cache = self.services.caches.find(name)
        authorize(claims, name, cache.is_public if cache else None, needed)
        if cache is None:
            raise AccessDenied(404, f"no cache named {name!r}")
        return cache

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, m: re.Match[str],
                        method: str, route: str) -> int:
        name = m.group(1)
        claims = self._caller(scope)
        if route == "cache-info":
            if method in ("GET", "HEAD"):
                cache = self._cache_for(claims, name, "r")
                await send_bytes(send, 200, cache.nix_cache_info().encode(), CACHE_INFO_TYPE,
                                 head=method == "HEAD")
                return 200
            if method == "PUT":
                # Nix offers its own nix-cache-info when it finds none; ours is derived from
                # the cache's settings, so the upload only needs to be permitted.
                self._cache_for(claims, name, "w")
                await read_body(receive, 4096)
                await send_bytes(send, 200, b"")
                return 200
            return await _not_allowed(send, "GET, HEAD, PUT")
        if route == "narinfo":
            hash_part = m.group(3)
            if not _HASH_PART.fullmatch(hash_part):
                await send_error(send, 400, f"{hash_part!r} is not a store path hash "
                                 "(32 characters of nix-base32)", method == "HEAD")
                return 400
            if method in ("GET", "HEAD"):
                return await self._get_narinfo(send, claims, name, hash_part, method == "HEAD")
            if method == "PUT":
                return await self._put_narinfo(scope, receive, send, claims, name, hash_part)
            if method == "DELETE":
                cache = self._cache_for(claims, name, "d")
                if not self.services.paths.delete(cache, hash_part):
                    await send_error(send, 404, f"{hash_part} is not in cache {name!r}")
                    return 404
                await send_bytes(send, 204, b"")
                return 204
            return await _not_allowed(send, "GET, HEAD, PUT, DELETE")
        file_name = m.group(4)
        if method in ("GET", "HEAD"):
            return await self._get_nar(scope, send, claims, name, file_name, method == "HEAD")
        if method == "PUT":
            cache = self._cache_for(claims, name, "w")
            length = header(scope, b"content-length")
            if length is not None and length.isdigit() and \
                    int(length) > self.services.settings.max_nar_size:
                await send_error(send, 413, "NAR is larger than the server accepts")
                return 413
            nar = await self.services.paths.put_nar(file_name, body_chunks(receive))
            metrics.BYTES_IN.labels(cache.name).inc(nar.file_size)
            metrics.UPLOADS.labels(cache.name, "nar", "stored").inc()
            await send_bytes(send, 200, b"")
            return 200
        return await _not_allowed(send, "GET, HEAD, PUT")

    async def _get_narinfo(self, send: Send, claims: TokenClaims | None, name: str,
                           hash_part: str, head: bool) -> int:
        found = self.services.paths.narinfo(name, hash_part)
        authorize(claims, name, found.cache_public if found else None, "r")
        if found is None:
            raise AccessDenied(404, f"no cache named {name!r}")
        if found.value is None:
            metrics.NARINFO_LOOKUPS.labels(name, "miss").inc()
            await send_error(send, 404, f"{hash_part} is not in cache {name!r}", head)
            return 404
        metrics.NARINFO_LOOKUPS.labels(name, "hit").inc()
        body = str(found.value).encode()
        metrics.BYTES_OUT.labels(name).inc(0 if head else len(body))
        await send_bytes(send, 200, body, NARINFO_TYPE, head=head)
        return 200

    async def _put_narinfo(self, scope: Scope, receive: Receive, send: Send,
                           claims: TokenClaims | None, name: str, hash_part: str) -> int:
        cache = self._cache_for(claims, name, "w")
        body = await read_body(receive, MAX_NARINFO_BYTES)
        if body is None:
            await send_error(send, 413, f"narinfo larger than {MAX_NARINFO_BYTES} bytes")
            return 413
        try:
            added = self.services.paths.put_narinfo(cache, hash_part, body)
        except UploadError:
            metrics.UPLOADS.labels(cache.name, "narinfo", "rejected").inc()
            raise
        metrics.UPLOADS.labels(cache.name, "narinfo", "stored" if added else "present").inc()
        await send_bytes(send, 200, b"")
        return 200

    async def _get_nar(self, scope: Scope, send: Send, claims: TokenClaims | None, name: str,
                       file_name: str, head: bool) -> int:
        m = NAR_FILE_NAME.fullmatch(file_name)
        if not m:
            await send_error(send, 404, f"no NAR named {file_name!r}", head)
            return 404
        found = self.services.paths.nar(name, m.group(1))
        authorize(claims, name, found.cache_public if found else None, "r")
        if found is None:
            raise AccessDenied(404, f"no cache named {name!r}")
        nar = found.value
        if not isinstance(nar, NarFile) or file_name != _nar_file_name(nar):
            await send_error(send, 404, f"{file_name} is not in cache {name!r}", head)
            return 404
        path = self.services.paths.nar_local_path(nar)
        if path is None or not os.path.isfile(path):
            # Metadata without content is a fault of ours; never answer with a short 200.
            log.error("NAR %s is referenced by cache %s but missing from storage",
                      nar.file_hash, name)
            await send_error(send, 503, "NAR content is temporarily unavailable", head)
            return 503
        return await _send_file(scope, send, path, nar.file_size, head, name)


def _nar_file_name(nar: NarFile) -> str:
    return nar_url(nar.file_hash, nar.compression).removeprefix("nar/")


async def _not_allowed(send: Send, allow: str) -> int:
    await send_error(send, 405, f"method not allowed here (allowed: {allow})",
                     extra=[(b"allow", allow.encode())])
    return 405


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


async def _send_file(scope: Scope, send: Send, path: str, size: int, head: bool,
                     cache: str) -> int:
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/x-nix-nar"),
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
    metrics.BYTES_OUT.labels(cache).inc(length)
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


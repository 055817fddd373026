"""The Nix binary cache protocol under /<cache>/: nix-cache-info, narinfo, nar.

These are the hottest routes (every substitution starts with a narinfo per path), so they
are plain ASGI: one regex, one indexed query, one send.
"""

from __future__ import annotations

import logging
import os
import re

from flywheel.auth.access import AccessDenied, authorize
from flywheel.auth.tokens import TokenClaims
from flywheel.cache.nix.paths import NAR_FILE_NAME, NarFile, nar_url
from flywheel.cache.nix.verify import UploadError, max_file_size
from flywheel.nix.narinfo import MAX_NARINFO_BYTES
from flywheel.server import metrics
from flywheel.server.cache_routes import CacheRoutes
from flywheel.server.files import send_file
from flywheel.server.responses import (
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
NARINFO_TYPE = b"text/x-nix-narinfo"
CACHE_INFO_TYPE = b"text/x-nix-cache-info"


class NixHandler(CacheRoutes):
    async def __call__(self, scope: Scope, receive: Receive, send: Send,
                       m: re.Match[str]) -> None:
        route = "cache-info" if m.group(2) else "narinfo" if m.group(3) is not None else "nar"

        async def dispatch(tracked: Receive) -> int:
            return await self._dispatch(scope, tracked, send, m, scope["method"], route)

        await self.respond(scope, receive, send, route, dispatch)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, m: re.Match[str],
                        method: str, route: str) -> int:
        name = m.group(1)
        claims = self.caller(scope)
        if route == "cache-info":
            if method in ("GET", "HEAD"):
                cache = self.cache_for(claims, name, "r")
                await send_bytes(send, 200, cache.nix_cache_info().encode(), CACHE_INFO_TYPE,
                                 head=method == "HEAD")
                return 200
            if method == "PUT":
                # Nix offers its own nix-cache-info when it finds none; ours is derived from
                # the cache's settings, so the upload only needs to be permitted.
                self.cache_for(claims, name, "w")
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
                cache = self.cache_for(claims, name, "d")
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
            cache = self.cache_for(claims, name, "w")
            length = header(scope, b"content-length")
            max_nar = self.services.settings.max_nar_size
            # An uncompressed file is the NAR; a compressed one may be a little larger.
            limit = max_nar if file_name.endswith(".nar") else max_file_size(max_nar)
            if length is not None and length.isdigit() and int(length) > limit:
                await send_error(send, 413, "NAR is larger than the server accepts")
                return 413
            nar = await self.services.paths.put_nar(file_name, body_chunks(receive))
            metrics.count(metrics.BYTES_IN, cache.name, amount=nar.file_size)
            metrics.count(metrics.UPLOADS, cache.name, "nar", "stored")
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
            metrics.count(metrics.NARINFO_LOOKUPS, name, "miss")
            await send_error(send, 404, f"{hash_part} is not in cache {name!r}", head)
            return 404
        metrics.count(metrics.NARINFO_LOOKUPS, name, "hit")
        body = str(found.value).encode()
        metrics.count(metrics.BYTES_OUT, name, amount=0 if head else len(body))
        await send_bytes(send, 200, body, NARINFO_TYPE, head=head)
        return 200

    async def _put_narinfo(self, scope: Scope, receive: Receive, send: Send,
                           claims: TokenClaims | None, name: str, hash_part: str) -> int:
        cache = self.cache_for(claims, name, "w")
        body = await read_body(receive, MAX_NARINFO_BYTES)
        if body is None:
            await send_error(send, 413, f"narinfo larger than {MAX_NARINFO_BYTES} bytes")
            return 413
        try:
            added = self.services.paths.put_narinfo(cache, hash_part, body)
        except UploadError:
            metrics.count(metrics.UPLOADS, cache.name, "narinfo", "rejected")
            raise
        metrics.count(metrics.UPLOADS, cache.name, "narinfo", "stored" if added else "present")
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
        return await send_file(scope, send, path, nar.file_size, head, name,
                               b"application/x-nix-nar")


def _nar_file_name(nar: NarFile) -> str:
    return nar_url(nar.file_hash, nar.compression).removeprefix("nar/")


async def _not_allowed(send: Send, allow: str) -> int:
    await send_error(send, 405, f"method not allowed here (allowed: {allow})",
                     extra=[(b"allow", allow.encode())])
    return 405

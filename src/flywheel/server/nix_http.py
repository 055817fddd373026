"""The Nix binary cache protocol under /<cache>/: nix-cache-info, narinfo, nar.

These are the hottest routes (every substitution starts with a narinfo per path), so they
are plain ASGI: one regex, one indexed query, one send. Uploads and other writes run on
the blocking pool."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Awaitable, Callable

from flywheel.app.services import Services
from flywheel.auth.authorize import CacheAction
from flywheel.auth.principal import Principal
from flywheel.cache.nix.nars import NAR_FILE_NAME, NarFile
from flywheel.cache.nix.paths import NarinfoLookup
from flywheel.nix.narinfo import MAX_NARINFO_BYTES
from flywheel.server import metrics
from flywheel.server.access import Access, Endpoint
from flywheel.server.blocking import Offload
from flywheel.server.cache_routes import CacheRoutes
from flywheel.server.content import send_content
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
NAR_TYPE = b"application/x-nix-nar"

ENDPOINTS = (
    Endpoint(("GET", "HEAD"), "/{cache}/nix-cache-info", "cache", CacheAction.PULL,
             "cache-info"),
    Endpoint(("PUT",), "/{cache}/nix-cache-info", "cache", CacheAction.PUSH, "cache-info"),
    Endpoint(("GET", "HEAD"), "/{cache}/{hash}.narinfo", "cache", CacheAction.PULL, "narinfo"),
    Endpoint(("PUT",), "/{cache}/{hash}.narinfo", "cache", CacheAction.PUSH, "narinfo"),
    Endpoint(("DELETE",), "/{cache}/{hash}.narinfo", "cache", CacheAction.DELETE, "narinfo"),
    Endpoint(("GET", "HEAD"), "/{cache}/nar/{file}", "cache", CacheAction.PULL, "nar"),
    Endpoint(("PUT",), "/{cache}/nar/{file}", "cache", CacheAction.PUSH, "nar"),
)

# (scope, receive, send, caller, the endpoint's declared action, cache name, key)
Handler = Callable[[Scope, Receive, Send, Principal, str, str, str], Awaitable[int]]


class NixHandler(CacheRoutes):
    def __init__(self, services: Services, access: Access, offload: Offload) -> None:
        super().__init__(services, access, offload)
        handlers: dict[tuple[str, str], Handler] = {
            ("cache-info", "GET"): self._get_cache_info,
            ("cache-info", "PUT"): self._put_cache_info,
            ("narinfo", "GET"): self._get_narinfo,
            ("narinfo", "PUT"): self._put_narinfo,
            ("narinfo", "DELETE"): self._delete_narinfo,
            ("nar", "GET"): self._get_nar,
            ("nar", "PUT"): self._put_nar,
        }
        self._routes = {(ep.label, method): (ep, handlers[ep.label, ep.methods[0]])
                        for ep in ENDPOINTS for method in ep.methods}

    async def __call__(self, scope: Scope, receive: Receive, send: Send,
                       m: re.Match[str]) -> None:
        route = "cache-info" if m.group(2) else "narinfo" if m.group(3) is not None else "nar"
        method = scope["method"]
        entry = self._routes.get((route, method))

        async def dispatch(body: Receive, out: Send) -> int:
            if entry is None:
                allowed = ", ".join(meth for (r, meth) in self._routes if r == route)
                await send_error(out, 405, f"method not allowed here (allowed: {allowed})",
                                 extra=[(b"allow", allowed.encode())])
                return 405
            endpoint, handler = entry
            principal = self.caller(scope)
            key = m.group(3) if route == "narinfo" else m.group(4) or ""
            if route == "narinfo" and not _HASH_PART.fullmatch(key):
                await send_error(out, 400, f"{key[:64]!r} is not a store path hash "
                                 "(32 characters of nix-base32)", method == "HEAD")
                return 400
            assert endpoint.action is not None
            return await handler(scope, body, out, principal, endpoint.action, m.group(1),
                                 key)

        await self.respond(scope, receive, send, route, dispatch)

    async def _get_cache_info(self, scope: Scope, _receive: Receive, send: Send,
                              principal: Principal, action: str, name: str, _key: str) -> int:
        cache = self.access.cache(principal, name, action)
        await send_bytes(send, 200, cache.nix_cache_info().encode(), CACHE_INFO_TYPE,
                         head=scope["method"] == "HEAD")
        return 200

    async def _put_cache_info(self, _scope: Scope, receive: Receive, send: Send,
                              principal: Principal, action: str, name: str, _key: str) -> int:
        # Nix offers its own nix-cache-info when it finds none; ours is derived from the
        # cache's settings, so the upload only needs to be permitted.
        self.access.cache(principal, name, action)
        await read_body(receive, 4096)
        await send_bytes(send, 200, b"")
        return 200

    async def _get_narinfo(self, scope: Scope, _receive: Receive, send: Send,
                           principal: Principal, action: str, name: str, hash_part: str) -> int:
        head = scope["method"] == "HEAD"
        found = self.services.paths.narinfo(name, hash_part)
        self.access.check_cache(principal, name, found.cache_public if found else None,
                                action)
        assert found is not None
        if found.text is None and not head and self.services.upstreams.configured(name):
            # A pull-through cache: fetched, verified and stored from its upstreams.
            pulled = await self.offload.run(self.services.upstreams.pull, name, hash_part)
            found = NarinfoLookup(found.cache_public, pulled)
        if found.text is None:
            metrics.count(metrics.NARINFO_LOOKUPS, name, "miss")
            self.services.traffic.lookup(name, "nix", False)
            await send_error(send, 404, f"{hash_part} is not in cache {name!r}", head)
            return 404
        metrics.count(metrics.NARINFO_LOOKUPS, name, "hit")
        body = found.text.encode()
        metrics.count(metrics.BYTES_OUT, name, amount=0 if head else len(body))
        self.services.traffic.lookup(name, "nix", True, 0 if head else len(body))
        await send_bytes(send, 200, body, NARINFO_TYPE, head=head)
        return 200

    async def _put_narinfo(self, _scope: Scope, receive: Receive, send: Send,
                           principal: Principal, action: str, name: str, hash_part: str) -> int:
        cache = self.access.cache(principal, name, action)
        body = await read_body(receive, MAX_NARINFO_BYTES)
        if body is None:
            await send_error(send, 413, f"narinfo larger than {MAX_NARINFO_BYTES} bytes")
            return 413
        try:
            added = await self.offload.run(self.services.paths.put_narinfo, cache, hash_part,
                                           body, self.access.readable(principal))
        except Exception:
            metrics.count(metrics.UPLOADS, cache.name, "narinfo", "rejected")
            raise
        metrics.count(metrics.UPLOADS, cache.name, "narinfo", "stored" if added else "present")
        await send_bytes(send, 200, b"")
        return 200

    async def _delete_narinfo(self, _scope: Scope, _receive: Receive, send: Send,
                              principal: Principal, action: str, name: str, hash_part: str) -> int:
        cache = self.access.cache(principal, name, action)
        if not await self.offload.run(self.services.paths.delete, cache, hash_part):
            await send_error(send, 404, f"{hash_part} is not in cache {name!r}")
            return 404
        await send_bytes(send, 204, b"")
        return 204

    async def _get_nar(self, scope: Scope, _receive: Receive, send: Send,
                       principal: Principal, action: str, name: str, file_name: str) -> int:
        head = scope["method"] == "HEAD"
        m = NAR_FILE_NAME.fullmatch(file_name)
        found = self.services.paths.nar(name, m.group(1)) if m else \
            self.services.paths.nar(name, "")
        self.access.check_cache(principal, name, found.cache_public if found else None,
                                action)
        assert found is not None
        nar = found.nar
        if nar is None or file_name != nar.url.removeprefix("nar/"):
            await send_error(send, 404, f"{file_name[:80]} is not in cache {name!r}", head)
            return 404
        path = self.services.paths.nars.local_path(nar)
        if path is None and not found.broken:
            # Not a local file (a bucket): redirected or streamed once it is known present.
            content = await self.offload.run(self.services.paths.nars.content, nar, head)
            if content is not None:
                return await send_content(scope, send, self.offload, content, head, name,
                                          NAR_TYPE)
        if found.broken or path is None or _size(path) != nar.file_size:
            return await self._unavailable(send, nar, head, found.broken)
        self.services.traffic.served(name, "nix", 0 if head else nar.file_size)
        return await send_file(scope, send, path, nar.file_size, head, name, NAR_TYPE)

    async def _unavailable(self, send: Send, nar: NarFile, head: bool, known: bool) -> int:
        """Metadata without intact content is a fault of ours: never a short 200. A HEAD
        says absent, so the next ``nix copy --to`` uploads the NAR again and heals it."""
        if not known:
            await self.offload.run(self.services.paths.nars.mark_broken, nar)
        if head:
            await send_error(send, 404, "the NAR is not available", head)
            return 404
        await send_error(send, 503, "the NAR's content is unavailable on this server")
        return 503

    async def _put_nar(self, scope: Scope, receive: Receive, send: Send,
                       principal: Principal, action: str, name: str, file_name: str) -> int:
        cache = self.access.cache(principal, name, action)
        length = header(scope, b"content-length")
        limits = self.services.paths.nars.limits
        # An uncompressed file is the NAR; a compressed one may be a little larger.
        limit = limits.max_nar_size if file_name.endswith(".nar") else limits.max_file_size
        if length is not None and length.isdigit() and int(length) > limit:
            await send_error(send, 413, "NAR is larger than the server accepts")
            return 413
        nar = await self.offload.consume(
            body_chunks(receive),
            lambda chunks: self.services.paths.put_nar(cache, file_name, chunks))
        metrics.count(metrics.BYTES_IN, cache.name, amount=nar.file_size)
        metrics.count(metrics.UPLOADS, cache.name, "nar", "stored")
        self.services.traffic.pushed(cache.name, principal.subject, nar.file_size)
        await send_bytes(send, 200, b"")
        return 200


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None

"""Bazel's HTTP remote cache protocol under /<cache>/: ``ac/<sha256>`` and ``cas/<sha256>``."""

from __future__ import annotations

import logging
import os
import re

from google.protobuf import json_format

from flywheel.auth.access import AccessDenied, authorize
from flywheel.auth.tokens import TokenClaims
from flywheel.bazel.action_result import MAX_ACTION_RESULT_BYTES, parse_action_result
from flywheel.bazel.digests import EMPTY_SHA256
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

ROUTE = re.compile(r"/([a-z0-9][a-z0-9._-]{0,49})/(ac|cas)/([^/]+)")
_HEX64 = re.compile(r"[0-9a-f]{64}")
OCTETS = b"application/octet-stream"


class BazelHandler(CacheRoutes):
    async def __call__(self, scope: Scope, receive: Receive, send: Send,
                       m: re.Match[str]) -> None:
        async def dispatch(tracked: Receive) -> int:
            return await self._dispatch(scope, tracked, send, scope["method"], m.group(1),
                                        m.group(2), m.group(3))

        await self.respond(scope, receive, send, m.group(2), dispatch)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, method: str,
                        name: str, kind: str, key: str) -> int:
        head = method == "HEAD"
        if not _HEX64.fullmatch(key):
            await send_error(send, 400, f"{key[:80]!r} is not a SHA-256 hash (64 lowercase hex "
                             "characters)", head)
            return 400
        claims = self.caller(scope)
        if method in ("GET", "HEAD"):
            if kind == "ac":
                return await self._get_ac(scope, send, claims, name, key, head)
            return await self._get_cas(scope, send, claims, name, key, head)
        if method == "PUT":
            cache = self.cache_for(claims, name, "w")
            length = header(scope, b"content-length")
            size = int(length) if length is not None and length.isdigit() else None
            if kind == "ac":
                body = await read_body(receive, MAX_ACTION_RESULT_BYTES)
                if body is None:
                    await send_error(send, 413, "ActionResult too large")
                    return 413
                self.services.bazel.put_ac(cache, key, body)
            else:
                await self.services.bazel.put_cas(key, size, body_chunks(receive))
            metrics.count(metrics.BYTES_IN, cache.name, amount=size or 0)
            metrics.count(metrics.BAZEL_UPLOADS, cache.name, kind)
            await send_bytes(send, 200, b"")
            return 200
        await send_error(send, 405, "method not allowed here (allowed: GET, HEAD, PUT)",
                         extra=[(b"allow", b"GET, HEAD, PUT")])
        return 405

    async def _get_ac(self, scope: Scope, send: Send, claims: TokenClaims | None, name: str,
                      key: str, head: bool) -> int:
        found = self.services.bazel.get_ac(name, key)
        authorize(claims, name, found.cache_public if found else None, "r")
        if found is None:
            raise AccessDenied(404, f"no cache named {name!r}")
        if found.result is None:
            metrics.count(metrics.BAZEL_LOOKUPS, name, "ac", "miss")
            await send_error(send, 404, f"action {key} is not in cache {name!r}", head)
            return 404
        metrics.count(metrics.BAZEL_LOOKUPS, name, "ac", "hit")
        accept = header(scope, b"accept") or b""
        if b"application/json" in accept:
            as_json = json_format.MessageToJson(parse_action_result(found.result))
            await send_bytes(send, 200, as_json.encode(), b"application/json", head=head)
            return 200
        metrics.count(metrics.BYTES_OUT, name, amount=0 if head else len(found.result))
        await send_bytes(send, 200, found.result, OCTETS, head=head)
        return 200

    async def _get_cas(self, scope: Scope, send: Send, claims: TokenClaims | None, name: str,
                       key: str, head: bool) -> int:
        self.cache_for(claims, name, "r")
        size = self.services.bazel.cas_size(key)
        if size is None:
            metrics.count(metrics.BAZEL_LOOKUPS, name, "cas", "miss")
            await send_error(send, 404, f"blob {key} is not in the CAS", head)
            return 404
        metrics.count(metrics.BAZEL_LOOKUPS, name, "cas", "hit")
        if key == EMPTY_SHA256:
            await send_bytes(send, 200, b"", OCTETS, head=head)
            return 200
        path = self.services.bazel.cas_path(key)
        if path is None or not os.path.isfile(path):
            log.error("CAS blob %s is indexed but missing from storage", key)
            await send_error(send, 404, f"blob {key} is not in the CAS", head)
            return 404
        return await send_file(scope, send, path, size, head, name, OCTETS)


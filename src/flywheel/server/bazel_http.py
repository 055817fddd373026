"""Bazel's HTTP remote cache protocol under /<cache>/: ``ac/<sha256>`` and ``cas/<sha256>``."""

from __future__ import annotations

import re

from google.protobuf import json_format

from flywheel.auth.authorize import CacheAction
from flywheel.auth.principal import Principal
from flywheel.bazel.action_result import MAX_ACTION_RESULT_BYTES, parse_action_result
from flywheel.bazel.digests import EMPTY_SHA256, Digest
from flywheel.server import metrics
from flywheel.server.access import Endpoint
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

ROUTE = re.compile(r"/([a-z0-9][a-z0-9._-]{0,49})/(ac|cas)/([^/]+)")
_HEX64 = re.compile(r"[0-9a-f]{64}")
OCTETS = b"application/octet-stream"

ENDPOINTS = (
    Endpoint(("GET", "HEAD"), "/{cache}/ac/{hash}", "cache", CacheAction.PULL, "ac"),
    Endpoint(("PUT",), "/{cache}/ac/{hash}", "cache", CacheAction.PUSH, "ac"),
    Endpoint(("GET", "HEAD"), "/{cache}/cas/{hash}", "cache", CacheAction.PULL, "cas"),
    Endpoint(("PUT",), "/{cache}/cas/{hash}", "cache", CacheAction.PUSH, "cas"),
)
_ACTIONS = {(ep.label, method): ep.action for ep in ENDPOINTS for method in ep.methods}


class BazelHandler(CacheRoutes):
    async def __call__(self, scope: Scope, receive: Receive, send: Send,
                       m: re.Match[str]) -> None:
        name, kind, key = m.group(1), m.group(2), m.group(3)
        method = scope["method"]

        async def dispatch(body: Receive, out: Send) -> int:
            action = _ACTIONS.get((kind, method))
            head = method == "HEAD"
            if action is None:
                await send_error(out, 405, "method not allowed here (allowed: GET, HEAD, PUT)",
                                 extra=[(b"allow", b"GET, HEAD, PUT")])
                return 405
            if not _HEX64.fullmatch(key):
                await send_error(out, 400, f"{key[:80]!r} is not a SHA-256 hash (64 lowercase "
                                 "hex characters)", head)
                return 400
            principal = self.caller(scope)
            if method == "PUT":
                return await self._put(scope, body, out, principal, action, name, kind, key)
            if kind == "ac":
                return await self._get_ac(scope, out, principal, action, name, key, head)
            return await self._get_cas(scope, out, principal, action, name, key, head)

        await self.respond(scope, receive, send, kind, dispatch)

    async def _put(self, scope: Scope, receive: Receive, send: Send, principal: Principal,
                   action: str, name: str, kind: str, key: str) -> int:
        cache = self.access.cache(principal, name, action)
        length = header(scope, b"content-length")
        size = int(length) if length is not None and length.isdigit() and len(length) < 17 \
            else None
        if kind == "ac":
            body = await read_body(receive, MAX_ACTION_RESULT_BYTES)
            if body is None:
                await send_error(send, 413, "ActionResult too large")
                return 413
            await self.offload.run(self.services.action_cache.put, cache, key, body)
        else:
            digest = Digest(key, size) if size is not None else None
            stored = await self.offload.consume(
                body_chunks(receive),
                lambda chunks: self.services.cas.put(cache, digest, chunks,
                                                     expected_hash=key))
            size = stored.size
        metrics.count(metrics.BYTES_IN, cache.name, amount=size or 0)
        metrics.count(metrics.BAZEL_UPLOADS, cache.name, kind)
        self.services.traffic.pushed(cache.name, principal.subject, size or 0)
        await send_bytes(send, 200, b"")
        return 200

    async def _get_ac(self, scope: Scope, send: Send, principal: Principal, action: str,
                      name: str, key: str, head: bool) -> int:
        found = self.services.action_cache.get(name, key)
        self.access.check_cache(principal, name, found.cache_public if found else None,
                                action)
        assert found is not None
        if found.unsettled:
            await self.offload.run(self.services.action_cache.settle, found)
        if found.result is None:
            metrics.count(metrics.BAZEL_LOOKUPS, name, "ac", "miss")
            self.services.traffic.lookup(name, "ac", False)
            await send_error(send, 404, f"action {key} is not in cache {name!r}", head)
            return 404
        metrics.count(metrics.BAZEL_LOOKUPS, name, "ac", "hit")
        self.services.traffic.lookup(name, "ac", True, 0 if head else len(found.result))
        accept = header(scope, b"accept") or b""
        if b"application/json" in accept:
            as_json = json_format.MessageToJson(parse_action_result(found.result))
            await send_bytes(send, 200, as_json.encode(), b"application/json", head=head)
            return 200
        metrics.count(metrics.BYTES_OUT, name, amount=0 if head else len(found.result))
        await send_bytes(send, 200, found.result, OCTETS, head=head)
        return 200

    async def _get_cas(self, scope: Scope, send: Send, principal: Principal, action: str,
                       name: str, key: str, head: bool) -> int:
        cache = self.access.cache(principal, name, action)
        held = self.services.cas.lookup(cache, key)
        if held is not None and (held.lost or held.stale):
            await self.offload.run(self.services.cas.settle, held)
        if held is None or held.lost:
            metrics.count(metrics.BAZEL_LOOKUPS, name, "cas", "miss")
            self.services.traffic.lookup(name, "cas", False)
            await send_error(send, 404, f"blob {key} is not in cache {name!r}", head)
            return 404
        metrics.count(metrics.BAZEL_LOOKUPS, name, "cas", "hit")
        self.services.traffic.lookup(name, "cas", True, 0 if head else held.size)
        path = self.services.cas.local_path(key)
        if key != EMPTY_SHA256 and path is None:
            # Not a local file (a bucket): streamed once it is known present.
            content = await self.offload.run(self.services.cas.content, cache,
                                             Digest(key, held.size))
            if content is None:
                await send_error(send, 404, f"blob {key} is not in cache {name!r}", head)
                return 404
            return await send_content(scope, send, self.offload, content, head, name, OCTETS)
        if key == EMPTY_SHA256 or path is None:
            await send_bytes(send, 200, b"", OCTETS, head=head)
            return 200
        return await send_file(scope, send, path, held.size, head, name, OCTETS)

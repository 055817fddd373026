"""REAPI v2 cache services and ByteStream over gRPC; thin adapters over BazelService."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError

from flywheel.app.services import Services
from flywheel.auth.access import AccessDenied, Authenticator, authorize
from flywheel.auth.tokens import TokenClaims
from flywheel.bazel.action_result import ActionResultError
from flywheel.bazel.digests import Digest, DigestError
from flywheel.bazel.reapi import bs_grpc, bs_pb2, re_grpc, re_pb2, semver_pb2, status_pb2
from flywheel.bazel.resources import parse_read, parse_write
from flywheel.cache.bazel.service import BazelError, CacheFull
from flywheel.cache.tenancy import Cache, CacheError, check_cache_name
from flywheel.codecs import CodecError, StreamDecoder, ZstdStreamCompressor, zstd_compress
from flywheel.server import metrics

log = logging.getLogger(__name__)

DEFAULT_INSTANCE = "main"
MAX_BATCH_BYTES = 4 << 20
READ_CHUNK = 1 << 20
GET_TREE_PAGE = 1000
_STATUS_FOR = {401: grpc.StatusCode.UNAUTHENTICATED, 403: grpc.StatusCode.PERMISSION_DENIED,
               404: grpc.StatusCode.NOT_FOUND}


def cache_name_for(instance_name: str) -> str:
    """Instance names are cache names; Bazel's default (empty) is the default cache."""
    name = instance_name or DEFAULT_INSTANCE
    try:
        return check_cache_name(name)
    except CacheError as e:
        raise DigestError(str(e)) from None


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode,
                 message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable")  # abort raises


def _digest(d: Any) -> Digest:
    return Digest(d.hash, d.size_bytes)


class Access:
    """Per-call authentication and authorization, mapped to gRPC status codes."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._auth = Authenticator(services.signer, services.tokens)

    def caller(self, context: grpc.aio.ServicerContext) -> TokenClaims | None:
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                return self._auth.caller(str(value))
        return None

    def cache(self, context: grpc.aio.ServicerContext, instance: str, needed: str) -> Cache:
        name = cache_name_for(instance)
        cache = self.services.caches.find(name)
        authorize(self.caller(context), name, cache.is_public if cache else None, needed)
        if cache is None:
            raise AccessDenied(404, f"no cache named {name!r}")
        return cache


_REFUSALS = (AccessDenied, BazelError, DigestError, ActionResultError)


class OutOfRange(BazelError):
    pass


def _status(e: Exception) -> tuple[grpc.StatusCode, str]:
    if isinstance(e, AccessDenied):
        return _STATUS_FOR.get(e.status, grpc.StatusCode.PERMISSION_DENIED), e.message
    if isinstance(e, CacheFull):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(e)
    if isinstance(e, OutOfRange):
        return grpc.StatusCode.OUT_OF_RANGE, str(e)
    return grpc.StatusCode.INVALID_ARGUMENT, str(e)


def guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Translate domain refusals into gRPC statuses, so no request ends in UNKNOWN."""

    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except _REFUSALS as e:
            await _abort(context, *_status(e))

    wrapper.__name__ = method.__name__
    return wrapper


def guarded_stream(method: Callable[..., Any]) -> Callable[..., Any]:
    async def wrapper(self: Any, request: Any,
                      context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in method(self, request, context):
                yield item
        except _REFUSALS as e:
            await _abort(context, *_status(e))

    wrapper.__name__ = method.__name__
    return wrapper


class Capabilities(re_grpc.CapabilitiesServicer):  # type: ignore[misc]
    def __init__(self, access: Access) -> None:
        self.access = access

    @guarded
    async def GetCapabilities(self, request: Any, context: Any) -> Any:
        self.access.cache(context, request.instance_name, "r")
        # Updates are advertised even to read-only callers: Bazel 4 aborts a default build
        # (--remote_upload_local_results) when they are not, while a refused upload only
        # costs it a warning.
        return re_pb2.ServerCapabilities(
            cache_capabilities=re_pb2.CacheCapabilities(
                digest_functions=[re_pb2.DigestFunction.SHA256],
                action_cache_update_capabilities=re_pb2.ActionCacheUpdateCapabilities(
                    update_enabled=True),
                max_batch_total_size_bytes=MAX_BATCH_BYTES,
                symlink_absolute_path_strategy=re_pb2.SymlinkAbsolutePathStrategy.ALLOWED,
                supported_compressors=[re_pb2.Compressor.ZSTD],
                supported_batch_update_compressors=[re_pb2.Compressor.ZSTD],
            ),
            low_api_version=semver_pb2.SemVer(major=2, minor=0),
            high_api_version=semver_pb2.SemVer(major=2, minor=3),
        )


class ActionCache(re_grpc.ActionCacheServicer):  # type: ignore[misc]
    def __init__(self, access: Access) -> None:
        self.access = access
        self.bazel = access.services.bazel

    @guarded
    async def GetActionResult(self, request: Any, context: Any) -> Any:
        cache = self.access.cache(context, request.instance_name, "r")
        digest = _digest(request.action_digest)
        found = self.bazel.get_ac(cache.name, digest.hash)
        if found is None or found.result is None:
            metrics.count(metrics.BAZEL_LOOKUPS, cache.name, "ac", "miss")
            await _abort(context, grpc.StatusCode.NOT_FOUND, f"action {digest} not cached")
        metrics.count(metrics.BAZEL_LOOKUPS, cache.name, "ac", "hit")
        result = re_pb2.ActionResult()
        result.ParseFromString(found.result)
        return result

    @guarded
    async def UpdateActionResult(self, request: Any, context: Any) -> Any:
        cache = self.access.cache(context, request.instance_name, "w")
        digest = _digest(request.action_digest)
        data = request.action_result.SerializeToString()
        self.bazel.put_ac(cache, digest.hash, data)
        metrics.count(metrics.BAZEL_UPLOADS, cache.name, "ac")
        return request.action_result


class ContentAddressableStorage(re_grpc.ContentAddressableStorageServicer):  # type: ignore[misc]
    def __init__(self, access: Access) -> None:
        self.access = access
        self.bazel = access.services.bazel

    @guarded
    async def FindMissingBlobs(self, request: Any, context: Any) -> Any:
        self.access.cache(context, request.instance_name, "r")
        digests = [_digest(d) for d in request.blob_digests]
        missing = self.bazel.find_missing(digests)
        return re_pb2.FindMissingBlobsResponse(
            missing_blob_digests=[re_pb2.Digest(hash=d.hash, size_bytes=d.size)
                                  for d in missing])

    @guarded
    async def BatchUpdateBlobs(self, request: Any, context: Any) -> Any:
        cache = self.access.cache(context, request.instance_name, "w")
        if sum(len(r.data) for r in request.requests) > MAX_BATCH_BYTES:
            raise BazelError(f"batch larger than {MAX_BATCH_BYTES} bytes; use ByteStream")
        responses = []
        for r in request.requests:
            code, message = grpc.StatusCode.OK, ""
            try:
                digest = _digest(r.digest)
                data = r.data
                if r.compressor == re_pb2.Compressor.ZSTD:
                    data = _zstd_decompress(data, digest.size)
                elif r.compressor != re_pb2.Compressor.IDENTITY:
                    raise BazelError("unsupported compressor")
                self.bazel.put_cas_bytes(digest, data)
                metrics.count(metrics.BAZEL_UPLOADS, cache.name, "cas")
            except CacheFull as e:
                code, message = grpc.StatusCode.RESOURCE_EXHAUSTED, str(e)
            except (BazelError, DigestError) as e:
                code, message = grpc.StatusCode.INVALID_ARGUMENT, str(e)
            responses.append(re_pb2.BatchUpdateBlobsResponse.Response(
                digest=r.digest, status=status_pb2.Status(code=code.value[0],
                                                          message=message)))
        return re_pb2.BatchUpdateBlobsResponse(responses=responses)

    @guarded
    async def BatchReadBlobs(self, request: Any, context: Any) -> Any:
        cache = self.access.cache(context, request.instance_name, "r")
        digests = [_digest(d) for d in request.digests]
        if sum(d.size for d in digests) > MAX_BATCH_BYTES:
            raise BazelError(f"batch larger than {MAX_BATCH_BYTES} bytes; use ByteStream")
        zstd_ok = re_pb2.Compressor.ZSTD in request.acceptable_compressors
        responses = []
        for d in digests:
            data = self._read_all(d)
            if data is None:
                metrics.count(metrics.BAZEL_LOOKUPS, cache.name, "cas", "miss")
                responses.append(re_pb2.BatchReadBlobsResponse.Response(
                    digest=re_pb2.Digest(hash=d.hash, size_bytes=d.size),
                    status=status_pb2.Status(code=grpc.StatusCode.NOT_FOUND.value[0],
                                             message="blob not found")))
                continue
            metrics.count(metrics.BAZEL_LOOKUPS, cache.name, "cas", "hit")
            compressor = re_pb2.Compressor.IDENTITY
            if zstd_ok and len(data) > 1024:
                data, compressor = zstd_compress(data), re_pb2.Compressor.ZSTD
            responses.append(re_pb2.BatchReadBlobsResponse.Response(
                digest=re_pb2.Digest(hash=d.hash, size_bytes=d.size), data=data,
                compressor=compressor, status=status_pb2.Status(code=0)))
        return re_pb2.BatchReadBlobsResponse(responses=responses)

    def _read_all(self, d: Digest) -> bytes | None:
        if d.is_empty:
            return b""
        if self.bazel.cas_size(d.hash) != d.size:
            return None
        try:
            with self.bazel.open_cas(d.hash) as f:
                data = f.read()
        except FileNotFoundError:
            return None
        return data if len(data) == d.size else None

    @guarded_stream
    async def GetTree(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.access.cache(context, request.instance_name, "r")
        root = _digest(request.root_digest)
        page_size = request.page_size if 0 < request.page_size <= GET_TREE_PAGE \
            else GET_TREE_PAGE
        token = request.page_token or "0"
        if not token.isdigit() or len(token) > 12:
            raise BazelError("invalid page_token")
        offset = int(token)
        # Breadth-first order is stable, so an offset into it is a stateless page token that
        # any replica can continue from.
        order: list[Any] = []
        queue, seen = [root], set()
        while queue and len(order) < offset + page_size:
            digest = queue.pop(0)
            if digest in seen:
                continue
            seen.add(digest)
            data = self._read_all(digest)
            if data is None:
                if digest == root:
                    raise AccessDenied(404, f"root directory {digest} not found")
                continue  # the spec asks to skip missing subtrees
            directory = re_pb2.Directory()
            try:
                directory.ParseFromString(data)
            except DecodeError:
                raise BazelError(f"{digest} is not a Directory") from None
            order.append(directory)
            queue.extend(_digest(child.digest) for child in directory.directories)
        page = order[offset:offset + page_size]
        more = bool(queue) and len(order) >= offset + page_size
        yield re_pb2.GetTreeResponse(directories=page,
                                     next_page_token=str(offset + len(page)) if more else "")


def _zstd_decompress(data: bytes, size: int) -> bytes:
    parts: list[bytes] = []
    total = 0

    def collect(chunk: bytes) -> None:
        nonlocal total
        total += len(chunk)
        if total > size:
            raise BazelError("blob is larger than its digest says")
        parts.append(chunk)

    decoder = StreamDecoder("zstd", collect)
    try:
        decoder.feed(data)
        decoder.finish()
    except CodecError as e:
        raise BazelError(str(e)) from None
    return b"".join(parts)


class ByteStream(bs_grpc.ByteStreamServicer):  # type: ignore[misc]
    def __init__(self, access: Access, spool_dir: str) -> None:
        self.access = access
        self.bazel = access.services.bazel
        self.spool_dir = spool_dir
        os.makedirs(spool_dir, exist_ok=True)

    @guarded_stream
    async def Read(self, request: Any, context: Any) -> AsyncIterator[Any]:
        resource = parse_read(request.resource_name)
        cache = self.access.cache(context, resource.instance, "r")
        digest = resource.digest
        compressor = ZstdStreamCompressor() if resource.compressor == "zstd" else None
        if request.read_limit < 0 or request.read_offset < 0 or \
                (compressor is None and request.read_offset > digest.size):
            raise OutOfRange("read_offset and read_limit must lie within the blob")
        if not digest.is_empty and self.bazel.cas_size(digest.hash) != digest.size:
            metrics.count(metrics.BAZEL_LOOKUPS, cache.name, "cas", "miss")
            raise AccessDenied(404, f"blob {digest} not found")
        try:
            source: Any = _Empty() if digest.is_empty else self.bazel.open_cas(digest.hash)
        except FileNotFoundError:
            metrics.count(metrics.BAZEL_LOOKUPS, cache.name, "cas", "miss")
            raise AccessDenied(404, f"blob {digest} not found") from None
        metrics.count(metrics.BAZEL_LOOKUPS, cache.name, "cas", "hit")
        with source:
            skip = request.read_offset
            remaining = request.read_limit or -1
            done = False
            while not done:
                raw = source.read(READ_CHUNK)
                done = not raw
                if compressor is None:
                    chunk = raw
                else:
                    # The flush at the end closes the frame; it is the last piece.
                    chunk = compressor.compress(raw) if raw else compressor.flush()
                if not chunk:
                    continue
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                    if not chunk:
                        continue
                if remaining >= 0:
                    chunk = chunk[:remaining]
                    remaining -= len(chunk)
                metrics.count(metrics.BYTES_OUT, cache.name, amount=len(chunk))
                yield bs_pb2.ReadResponse(data=chunk)
                if remaining == 0:
                    break

    @guarded
    async def Write(self, request_iterator: Any, context: Any) -> Any:
        return await self._write(request_iterator, context)

    def _spool_path(self, resource_name: str) -> str:
        # Partial uploads live on disk under a name derived from the resource, so a client
        # can resume (QueryWriteStatus) on whichever process serves it next.
        return os.path.join(self.spool_dir,
                            "bs-" + hashlib.sha256(resource_name.encode()).hexdigest())

    async def _write(self, request_iterator: Any, context: Any) -> Any:
        first = True
        resource_name = ""
        spool: Any = None
        try:
            async for req in request_iterator:
                if first:
                    first = False
                    resource_name = req.resource_name
                    resource = parse_write(resource_name)
                    cache = self.access.cache(context, resource.instance, "w")
                    digest = resource.digest
                    if self.bazel.has_cas(digest):
                        # Already stored: end the stream early, as the spec allows.
                        return bs_pb2.WriteResponse(
                            committed_size=-1 if resource.compressor != "identity"
                            else digest.size)
                    self.bazel.check_fits(digest.size)
                    path = self._spool_path(resource_name)
                    have = os.path.getsize(path) if os.path.exists(path) else 0
                    if req.write_offset not in (0, have):
                        raise BazelError(f"write_offset {req.write_offset} does not continue "
                                         f"the {have} bytes received so far")
                    spool = open(path, "r+b" if req.write_offset else "wb")  # noqa: SIM115
                    spool.seek(req.write_offset)
                    spool.truncate()
                elif req.resource_name and req.resource_name != resource_name:
                    raise BazelError("resource_name changed within one write")
                elif req.write_offset != spool.tell():
                    raise BazelError(f"write_offset {req.write_offset} expected {spool.tell()}")
                spool.write(req.data)
                limit = digest.size if resource.compressor == "identity" \
                    else digest.size + (digest.size >> 4) + (64 << 10)
                if spool.tell() > limit:
                    raise BazelError("more data than the digest's size")
                if req.finish_write:
                    spool.close()
                    spool = None
                    committed = os.path.getsize(self._spool_path(resource_name))
                    await self._commit_spool(resource_name, digest, resource.compressor)
                    metrics.count(metrics.BAZEL_UPLOADS, cache.name, "cas")
                    metrics.count(metrics.BYTES_IN, cache.name, amount=committed)
                    return bs_pb2.WriteResponse(committed_size=committed)
        finally:
            if spool is not None:
                spool.close()
        if first:
            raise BazelError("empty write stream")
        raise BazelError("write stream ended without finish_write")

    async def _commit_spool(self, resource_name: str, digest: Digest, compressor: str) -> None:
        path = self._spool_path(resource_name)

        async def chunks() -> AsyncIterator[bytes]:
            with open(path, "rb") as f:
                while chunk := f.read(READ_CHUNK):
                    yield chunk

        try:
            await self.bazel.put_cas(digest.hash, digest.size, chunks(), compressor)
        finally:
            os.unlink(path)

    @guarded
    async def QueryWriteStatus(self, request: Any, context: Any) -> Any:
        resource = parse_write(request.resource_name)
        self.access.cache(context, resource.instance, "w")
        if self.bazel.has_cas(resource.digest):
            return bs_pb2.QueryWriteStatusResponse(committed_size=resource.digest.size,
                                                   complete=True)
        path = self._spool_path(request.resource_name)
        if not os.path.exists(path):
            raise AccessDenied(404, "no upload in progress for this resource")
        return bs_pb2.QueryWriteStatusResponse(committed_size=os.path.getsize(path),
                                               complete=False)


class _Empty:
    def read(self, _n: int) -> bytes:
        return b""

    def __enter__(self) -> _Empty:
        return self

    def __exit__(self, *_: object) -> None:
        pass


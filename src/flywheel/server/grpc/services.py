"""REAPI v2 cache services and ByteStream over gRPC: thin adapters over the cache domain.

Every method declares the action it needs on the cache its instance name names; the
``rpc`` decorator authorizes through ``Access`` before the method runs and maps every
refusal through one table. Blocking work runs on the blocking pool."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, NoReturn, TypeVar

import grpc
from google.protobuf.message import DecodeError

from flywheel.auth.authorize import CacheAction
from flywheel.auth.principal import Principal
from flywheel.bazel.digests import Digest, DigestError
from flywheel.bazel.reapi import bs_pb2, re_pb2, semver_pb2, status_pb2
from flywheel.bazel.resources import Resource, parse_read, parse_write
from flywheel.cache.tenancy import Cache, check_cache_name
from flywheel.codecs import ZstdStreamCompressor, zstd_compress
from flywheel.errors import FlywheelError, Invalid, NotFound, OutOfRange, TooLarge
from flywheel.server import metrics
from flywheel.server.access import Access
from flywheel.server.blocking import Offload
from flywheel.server.grpc.errors import code_for, status_of
from flywheel.server.grpc.registration import UNDECODABLE
from flywheel.storage.faults import storage_faults

DEFAULT_INSTANCE = "main"
MAX_BATCH_BYTES = 4 << 20
READ_CHUNK = 1 << 20
# Received bytes reach the spool file (and QueryWriteStatus) in pieces of about this size.
SPOOL_FLUSH = 64 << 10
GET_TREE_PAGE = 1000
T = TypeVar("T")


def cache_name_for(instance_name: str) -> str:
    """Instance names are cache names; Bazel's default (empty) is the default cache."""
    return check_cache_name(instance_name or DEFAULT_INSTANCE)


def _digest(d: Any) -> Digest:
    try:
        return Digest(d.hash, d.size_bytes)
    except DigestError as e:
        raise Invalid(str(e)) from None


def _resource(parse: Callable[[str], Resource], name: str) -> Resource:
    try:
        return parse(name)
    except DigestError as e:
        raise Invalid(str(e)) from None


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: BaseException) -> NoReturn:
    await context.abort(*status_of(error))
    raise AssertionError("unreachable")  # abort raises


@dataclass(frozen=True)
class Method:
    """What an RPC needs: an action on the cache named by the request's instance."""

    name: str
    action: str


def rpc(action: str, instance: Callable[[Any], str] = lambda r: r.instance_name
        ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Authorize, then run; any refusal becomes its status code (never UNKNOWN)."""

    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        async def wrapper(self: Servicer, request: Any, context: grpc.aio.ServicerContext[Any, Any]
                          ) -> Any:
            try:
                _decodable(request)
                cache = self.cache(context, instance(request), action)
                return await method(self, request, context, cache)
            except grpc.aio.AbortError:
                raise
            except Exception as e:  # every failure gets a status; status_of logs the rest
                await _abort(context, e)

        wrapper.declared = Method(method.__name__, action)  # type: ignore[attr-defined]
        return wrapper

    return decorate


def rpc_stream(action: str, instance: Callable[[Any], str]
               ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(method: Callable[..., AsyncIterator[Any]]) -> Callable[..., Any]:
        @functools.wraps(method)
        async def wrapper(self: Servicer, request: Any, context: grpc.aio.ServicerContext[Any, Any]
                          ) -> AsyncIterator[Any]:
            try:
                _decodable(request)
                cache = self.cache(context, instance(request), action)
                async for item in method(self, request, context, cache):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as e:  # every failure gets a status; status_of logs the rest
                await _abort(context, e)

        wrapper.declared = Method(method.__name__, action)  # type: ignore[attr-defined]
        return wrapper

    return decorate


class Servicer:
    def __init__(self, access: Access, offload: Offload) -> None:
        self.access = access
        self.offload = offload
        self.services = access.services

    def principal(self, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                return self.access.principal(str(value))
        return self.access.principal(None)

    def cache(self, context: grpc.aio.ServicerContext[Any, Any], instance: str,
              action: str) -> Cache:
        return self.access.cache(self.principal(context), cache_name_for(instance), action)


class Capabilities(Servicer):
    @rpc(CacheAction.PULL)
    async def GetCapabilities(self, request: Any, context: Any, cache: Cache) -> Any:
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


class ActionCache(Servicer):
    @rpc(CacheAction.PULL)
    async def GetActionResult(self, request: Any, context: Any, cache: Cache) -> Any:
        digest = _digest(request.action_digest)
        action_cache = self.services.action_cache
        found = action_cache.get(cache.name, digest.hash)
        if found is not None and found.unsettled:
            await self.offload.run(action_cache.settle, found)
        if found is None or found.result is None:
            metrics.count(metrics.BAZEL_LOOKUPS, cache.name, "ac", "miss")
            raise NotFound(f"action {digest} is not cached")
        metrics.count(metrics.BAZEL_LOOKUPS, cache.name, "ac", "hit")
        result = re_pb2.ActionResult()
        result.ParseFromString(found.result)
        return result

    @rpc(CacheAction.PUSH)
    async def UpdateActionResult(self, request: Any, context: Any, cache: Cache) -> Any:
        digest = _digest(request.action_digest)
        data = request.action_result.SerializeToString()
        await self.offload.run(self.services.action_cache.put, cache, digest.hash, data)
        metrics.count(metrics.BAZEL_UPLOADS, cache.name, "ac")
        return request.action_result


class ContentAddressableStorage(Servicer):
    @rpc(CacheAction.PULL)
    async def FindMissingBlobs(self, request: Any, context: Any, cache: Cache) -> Any:
        digests = [_digest(d) for d in request.blob_digests]
        missing = await self.offload.run(self.services.cas.find_missing, cache, digests)
        return re_pb2.FindMissingBlobsResponse(
            missing_blob_digests=[re_pb2.Digest(hash=d.hash, size_bytes=d.size)
                                  for d in missing])

    @rpc(CacheAction.PUSH)
    async def BatchUpdateBlobs(self, request: Any, context: Any, cache: Cache) -> Any:
        # The bound is on what the blobs will be, not on what was sent: a small compressed
        # payload may claim any size.
        if sum(r.digest.size_bytes for r in request.requests) > MAX_BATCH_BYTES:
            raise TooLarge(f"batch larger than {MAX_BATCH_BYTES} bytes; use ByteStream")
        return re_pb2.BatchUpdateBlobsResponse(responses=await self.offload.run(
            self._update_all, cache, list(request.requests)))

    def _update_all(self, cache: Cache, requests: list[Any]) -> list[Any]:
        responses = []
        for r in requests:
            status = status_pb2.Status(code=grpc.StatusCode.OK.value[0])
            try:
                digest = _digest(r.digest)
                compressor = {re_pb2.Compressor.IDENTITY: "identity",
                              re_pb2.Compressor.ZSTD: "zstd"}.get(r.compressor)
                if compressor is None:
                    raise Invalid("unsupported compressor")
                self.services.cas.put(cache, digest, [r.data], compressor)
                metrics.count(metrics.BAZEL_UPLOADS, cache.name, "cas")
            except FlywheelError as e:
                status = status_pb2.Status(code=code_for(e).value[0], message=e.message)
            responses.append(re_pb2.BatchUpdateBlobsResponse.Response(digest=r.digest,
                                                                      status=status))
        return responses

    @rpc(CacheAction.PULL)
    async def BatchReadBlobs(self, request: Any, context: Any, cache: Cache) -> Any:
        digests = [_digest(d) for d in request.digests]
        if sum(d.size for d in digests) > MAX_BATCH_BYTES:
            raise TooLarge(f"batch larger than {MAX_BATCH_BYTES} bytes; use ByteStream")
        zstd_ok = re_pb2.Compressor.ZSTD in request.acceptable_compressors
        return re_pb2.BatchReadBlobsResponse(responses=await self.offload.run(
            self._read_all, cache, digests, zstd_ok))

    def _read_all(self, cache: Cache, digests: list[Digest], zstd_ok: bool) -> list[Any]:
        responses = []
        for d in digests:
            wire = re_pb2.Digest(hash=d.hash, size_bytes=d.size)
            data = self.services.cas.read(cache, d)
            if data is None:
                metrics.count(metrics.BAZEL_LOOKUPS, cache.name, "cas", "miss")
                responses.append(re_pb2.BatchReadBlobsResponse.Response(
                    digest=wire, status=status_pb2.Status(
                        code=grpc.StatusCode.NOT_FOUND.value[0], message="blob not found")))
                continue
            metrics.count(metrics.BAZEL_LOOKUPS, cache.name, "cas", "hit")
            compressor = re_pb2.Compressor.IDENTITY
            if zstd_ok and len(data) > 1024:
                data, compressor = zstd_compress(data), re_pb2.Compressor.ZSTD
            responses.append(re_pb2.BatchReadBlobsResponse.Response(
                digest=wire, data=data, compressor=compressor, status=status_pb2.Status(code=0)))
        return responses

    @rpc_stream(CacheAction.PULL, lambda r: r.instance_name)
    async def GetTree(self, request: Any, context: Any, cache: Cache) -> AsyncIterator[Any]:
        root = _digest(request.root_digest)
        page_size = request.page_size if 0 < request.page_size <= GET_TREE_PAGE \
            else GET_TREE_PAGE
        token = request.page_token or "0"
        if not token.isdigit() or len(token) > 12:
            raise Invalid("invalid page_token")
        page, next_token = await self.offload.run(self._tree_page, cache, root, int(token),
                                                  page_size)
        yield re_pb2.GetTreeResponse(directories=page, next_page_token=next_token)

    def _tree_page(self, cache: Cache, root: Digest, offset: int,
                   page_size: int) -> tuple[list[Any], str]:
        # Breadth-first order is stable, so an offset into it is a stateless page token that
        # any replica can continue from.
        order: list[Any] = []
        queue, seen = [root], set()
        while queue and len(order) < offset + page_size:
            digest = queue.pop(0)
            if digest in seen:
                continue
            seen.add(digest)
            data = self.services.cas.read(cache, digest)
            if data is None:
                if digest == root:
                    raise NotFound(f"root directory {digest} not found")
                continue  # the spec asks to skip missing subtrees
            directory = re_pb2.Directory()
            try:
                directory.ParseFromString(data)
            except DecodeError:
                raise Invalid(f"{digest} is not a Directory") from None
            order.append(directory)
            queue.extend(_digest(child.digest) for child in directory.directories)
        page = order[offset:offset + page_size]
        more = bool(queue) and len(order) >= offset + page_size
        return page, str(offset + len(page)) if more else ""


def _read_instance(request: Any) -> str:
    return _resource(parse_read, request.resource_name).instance


def _write_instance(request: Any) -> str:
    return _resource(parse_write, request.resource_name).instance


class ByteStream(Servicer):
    def __init__(self, access: Access, offload: Offload, spool_dir: str) -> None:
        super().__init__(access, offload)
        self.spool_dir = spool_dir
        os.makedirs(spool_dir, exist_ok=True)

    @rpc_stream(CacheAction.PULL, _read_instance)
    async def Read(self, request: Any, context: Any, cache: Cache) -> AsyncIterator[Any]:
        digest = _resource(parse_read, request.resource_name).digest
        compressed = _resource(parse_read, request.resource_name).compressor == "zstd"
        if request.read_limit < 0 or request.read_offset < 0 or \
                (not compressed and request.read_offset > digest.size):
            raise OutOfRange("read_offset and read_limit must lie within the blob")
        source = await self.offload.run(self._open, cache, digest)
        if source is None:
            metrics.count(metrics.BAZEL_LOOKUPS, cache.name, "cas", "miss")
            raise NotFound(f"blob {digest} not found")
        metrics.count(metrics.BAZEL_LOOKUPS, cache.name, "cas", "hit")
        with source:
            async for chunk in _window(self._pieces(source, compressed),
                                       request.read_offset, request.read_limit or -1):
                metrics.count(metrics.BYTES_OUT, cache.name, amount=len(chunk))
                yield bs_pb2.ReadResponse(data=chunk)

    def _open(self, cache: Cache, digest: Digest) -> BinaryIO | _Empty | None:
        return _Empty() if digest.is_empty else self.services.cas.open(cache, digest)

    async def _pieces(self, source: BinaryIO | _Empty,
                      compressed: bool) -> AsyncIterator[bytes]:
        compressor = ZstdStreamCompressor() if compressed else None
        while True:
            raw = await self.offload.run(source.read, READ_CHUNK)
            if compressor is None:
                if not raw:
                    return
                yield raw
                continue
            # The flush at the end closes the frame; it is the last piece.
            piece = compressor.compress(raw) if raw else compressor.flush()
            if piece:
                yield piece
            if not raw:
                return

    async def Write(self, request_iterator: Any, context: Any) -> Any:
        # The instance comes with the first message, so this method authorizes itself
        # (as ``rpc`` would) once it has read it.
        try:
            return await self._write(request_iterator, context)
        except grpc.aio.AbortError:
            raise
        except Exception as e:  # every failure gets a status; status_of logs the rest
            await _abort(context, e)

    Write.declared = Method("Write", CacheAction.PUSH)  # type: ignore[attr-defined]

    async def _write(self, requests: Any, context: Any) -> Any:
        first = await _next_message(requests)
        if first is None:
            raise Invalid("empty write stream")
        resource = _resource(parse_write, first.resource_name)
        cache = self.cache(context, resource.instance, CacheAction.PUSH)
        digest, compressor = resource.digest, resource.compressor
        cas = self.services.cas
        readable = self.access.readable(self.principal(context))
        if await self.offload.run(cas.adopt, cache, digest, readable):
            # Held already (or readable elsewhere): end the stream early, as the spec allows.
            return bs_pb2.WriteResponse(
                committed_size=-1 if compressor != "identity" else digest.size)
        cas.bound.check_fits(digest.size)
        path = self._spool_path(first.resource_name)
        spool = await self.offload.run(_Spool.open, path, first.write_offset)
        limit = digest.size if compressor == "identity" \
            else digest.size + (digest.size >> 4) + (64 << 10)
        try:
            request = first
            while True:
                if request.resource_name and request.resource_name != first.resource_name:
                    raise Invalid("resource_name changed within one write")
                if request.write_offset != spool.size:
                    raise Invalid(f"write_offset {request.write_offset} does not continue the "
                                  f"{spool.size} bytes received so far")
                await spool.add(request.data, self.offload)
                if spool.size > limit:
                    raise Invalid("more data than the digest's size")
                if request.finish_write:
                    await self.offload.run(spool.close)
                    await self.offload.run(self._commit_spool, cache, path, digest, compressor)
                    metrics.count(metrics.BAZEL_UPLOADS, cache.name, "cas")
                    metrics.count(metrics.BYTES_IN, cache.name, amount=spool.size)
                    return bs_pb2.WriteResponse(committed_size=spool.size)
                request = await _next_message(requests)
                if request is None:
                    break
        except FlywheelError:
            # A refused upload cannot be resumed; one the client broke off can.
            await self.offload.run(spool.discard)
            raise
        finally:
            await self.offload.run(spool.close)
        raise Invalid("write stream ended without finish_write (resume it from "
                      "QueryWriteStatus's committed_size)")

    def _commit_spool(self, cache: Cache, path: str, digest: Digest, compressor: str) -> None:
        try:
            self.services.cas.put(cache, digest, _iterate(path), compressor)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def _spool_path(self, resource_name: str) -> str:
        # Partial uploads live on disk under a name derived from the resource, so a client
        # can resume (QueryWriteStatus) on whichever process serves it next.
        return os.path.join(self.spool_dir,
                            "bs-" + hashlib.sha256(resource_name.encode()).hexdigest())

    @rpc(CacheAction.PUSH, _write_instance)
    async def QueryWriteStatus(self, request: Any, context: Any, cache: Cache) -> Any:
        resource = _resource(parse_write, request.resource_name)
        if await self.offload.run(self.services.cas.has, cache, resource.digest):
            return bs_pb2.QueryWriteStatusResponse(committed_size=resource.digest.size,
                                                   complete=True)
        path = self._spool_path(request.resource_name)
        if not os.path.exists(path):
            raise NotFound("no upload in progress for this resource")
        return bs_pb2.QueryWriteStatusResponse(committed_size=os.path.getsize(path),
                                               complete=False)


def _decodable(request: Any) -> None:
    if request is UNDECODABLE:
        raise Invalid("the request message could not be decoded")


async def _next_message(requests: Any) -> Any:
    """The next message of a client stream, None at its end."""
    request = await anext(aiter(requests), None)
    _decodable(request)
    return request


async def _window(pieces: AsyncIterator[bytes], skip: int,
                  remaining: int) -> AsyncIterator[bytes]:
    """The part of a stream from ``skip`` on, at most ``remaining`` bytes (-1: all)."""
    async for piece in pieces:
        if skip:
            cut = min(skip, len(piece))
            piece, skip = piece[cut:], skip - cut
            if not piece:
                continue
        if remaining >= 0:
            piece = piece[:remaining]
            remaining -= len(piece)
        yield piece
        if remaining == 0:
            return


class _Empty:
    def read(self, _n: int) -> bytes:
        return b""

    def __enter__(self) -> _Empty:
        return self

    def __exit__(self, *_: object) -> None:
        pass


class _Spool:
    """A ByteStream upload received so far, on disk; written in large pieces off the loop."""

    def __init__(self, path: str, file: BinaryIO) -> None:
        self.path = path
        self._file = file
        self._pending = bytearray()
        self.size = file.tell()

    @classmethod
    def open(cls, path: str, offset: int) -> _Spool:
        have = os.path.getsize(path) if os.path.exists(path) else 0
        # Resuming at or before what is on disk is fine: the bytes from there on are sent
        # again (a broken-off stream may have flushed a little after the client asked).
        if offset > have:
            raise Invalid(f"write_offset {offset} does not continue the {have} bytes "
                          "received so far")
        with storage_faults("spooling an upload"):
            # Unbuffered: every write is one of ours, and closing flushes nothing.
            file = open(path, "r+b" if offset else "wb", buffering=0)  # noqa: SIM115
            file.seek(offset)
            file.truncate()
        return cls(path, file)

    async def add(self, data: bytes, offload: Offload) -> None:
        self._pending += data
        self.size += len(data)
        if len(self._pending) >= SPOOL_FLUSH:
            await offload.run(self._flush)

    def _flush(self) -> None:
        with storage_faults("spooling an upload"):
            self._file.write(self._pending)
        self._pending.clear()

    def close(self) -> None:
        if not self._file.closed:
            try:
                self._flush()
            finally:
                self._file.close()

    def discard(self) -> None:
        self._pending.clear()
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _iterate(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(READ_CHUNK):
            yield chunk

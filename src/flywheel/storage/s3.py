"""Blobs as objects in an S3-compatible bucket (AWS S3, MinIO, SeaweedFS, ...), through
obstore.

An upload streams to the bucket while the caller verifies it: small blobs are kept in memory
and written in one request at ``place``; past ``multipart_size`` the bytes stream as a
multipart upload to a staging object under ``tmp/``, completed only once the caller has
verified them (``finish``) and copied to its key inside the bucket at ``place``. A writer
closed before ``finish`` aborts its multipart upload, so a failed verification leaves no
object. Buckets should expire incomplete multipart uploads (a killed process cannot abort
its own) with a lifecycle rule."""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import obstore
from obstore.store import S3Store

from flywheel.errors import Unavailable

if TYPE_CHECKING:
    from obstore import ObjectMeta
    from obstore.store import ClientConfig

log = logging.getLogger(__name__)

TMP_PREFIX = "tmp/"
_QUEUE_DEPTH = 4
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """``s3://BUCKET[/PREFIX]``."""
        if not url.startswith("s3://"):
            raise ValueError(f"not an s3:// URL: {url!r}")
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {url!r} (use s3://BUCKET/PREFIX)")
        return cls(bucket, prefix.strip("/"))


@dataclass(frozen=True)
class S3Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:
        return f"S3Credentials(access_key_id={self.access_key_id!r}, ...)"


@contextlib.contextmanager
def s3_faults(what: str) -> Iterator[None]:
    """A bucket that cannot be reached (or refuses us) is ``Unavailable``; a missing object
    (FileNotFoundError) is left to the caller, who knows what absence means."""
    try:
        yield
    except FileNotFoundError:
        raise
    except Unavailable:
        raise
    except Exception as e:  # obstore raises its own error kinds for every transport fault
        log.error("object storage fault while %s: %s: %s", what, type(e).__name__, e)
        raise Unavailable("the server's object storage is unavailable; try again") from None


class _Stream(io.RawIOBase):
    """A GET's body as a readable file."""

    def __init__(self, chunks: Iterator[Any]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            with s3_faults("reading content"):
                chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(bytes(chunk))
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


class _Abort(Exception):
    """The writer was closed before it finished: abort the multipart upload."""


class S3BlobWriter:
    def __init__(self, store: S3BlobStore) -> None:
        self._store = store
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._queue: queue.Queue[bytes | BaseException | None] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._staged: str | None = None
        self._data: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._queue is not None:
            self._send(data)
            return
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered >= self._store.multipart_size:
            self._start_multipart()

    def _start_multipart(self) -> None:
        self._staged = f"{TMP_PREFIX}{uuid.uuid4().hex}"
        self._queue = queue.Queue(_QUEUE_DEPTH)
        self._thread = threading.Thread(target=self._upload, args=(self._staged,),
                                        name="flywheel-s3-upload", daemon=True)
        self._thread.start()
        pending, self._buffer = b"".join(self._buffer), []
        self._send(pending)

    def _pieces(self) -> Iterator[bytes]:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _upload(self, key: str) -> None:
        try:
            obstore.put(self._store.store, key, self._pieces(),
                        chunk_size=self._store.multipart_size, max_concurrency=4)
        except BaseException as e:  # handed to the writing thread
            self._error = e
            # Unblock a writer waiting on a full queue.
            with contextlib.suppress(queue.Empty):
                while True:
                    self._queue.get_nowait()  # type: ignore[union-attr]

    def _send(self, item: bytes | BaseException | None) -> None:
        assert self._queue is not None and self._thread is not None
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        self._raise_upload_error()

    def _raise_upload_error(self) -> None:
        if self._error is not None and not isinstance(self._error, _Abort):
            with s3_faults("storing an upload"):
                raise self._error

    def finish(self) -> None:
        if self._queue is None:
            self._data = b"".join(self._buffer)
            self._buffer = []
            return
        assert self._thread is not None
        self._send(None)
        self._thread.join()
        self._raise_upload_error()

    def place(self, key: str) -> None:
        with s3_faults("storing an upload"):
            if self._data is not None:
                obstore.put(self._store.store, key, self._data, use_multipart=False)
            else:
                assert self._staged is not None
                obstore.copy(self._store.store, self._staged, key)

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._send(_Abort())
            self._thread.join()
        if self._staged is not None and self._error is None:
            with contextlib.suppress(Exception):
                obstore.delete(self._store.store, self._staged)
        self._buffer = []
        self._data = None


class S3BlobStore:
    def __init__(self, location: S3Location, *, endpoint: str | None, region: str | None,
                 credentials: S3Credentials | None, multipart_size: int,
                 tmp_dir: Path) -> None:
        self.location = location
        self.endpoint = endpoint
        self.multipart_size = multipart_size
        config: dict[str, Any] = {}
        if endpoint:
            # S3-compatible servers are addressed by path (http://host/bucket/key).
            config.update(endpoint=endpoint, virtual_hosted_style_request=False)
        if region:
            config["region"] = region
        if credentials is not None:
            config.update(access_key_id=credentials.access_key_id,
                          secret_access_key=credentials.secret_access_key)
            if credentials.session_token:
                config["token"] = credentials.session_token
        client: ClientConfig = {
            "allow_http": bool(endpoint and endpoint.startswith("http://")),
            "timeout": timedelta(minutes=10), "connect_timeout": timedelta(seconds=5)}
        # Credentials not given here come from the usual AWS variables (AWS_ACCESS_KEY_ID,
        # AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION), read by obstore itself.
        self.store = S3Store(location.bucket, prefix=location.prefix or None,
                             client_options=client, **config)
        self.tmp_dir = tmp_dir
        tmp_dir.mkdir(parents=True, exist_ok=True)

    def describe(self) -> str:
        where = f"s3://{self.location.bucket}/{self.location.prefix}".rstrip("/")
        return f"{where} at {self.endpoint}" if self.endpoint else where

    def writer(self) -> S3BlobWriter:
        return S3BlobWriter(self)

    def put(self, key: str, data: bytes) -> None:
        with s3_faults("storing content"):
            obstore.put(self.store, key, data, use_multipart=False)

    def _head(self, key: str) -> Any:
        try:
            with s3_faults("looking content up"):
                return obstore.head(self.store, key)
        except FileNotFoundError:
            return None

    def size(self, key: str) -> int | None:
        meta = self._head(key)
        return None if meta is None else int(meta["size"])

    def modified(self, key: str) -> float | None:
        meta = self._head(key)
        return None if meta is None else float(meta["last_modified"].timestamp())

    def open(self, key: str) -> BinaryIO:
        with s3_faults("reading content"):
            result = obstore.get(self.store, key)
            stream = result.stream(min_chunk_size=_READ_CHUNK)
        return io.BufferedReader(_Stream(iter(stream)), _READ_CHUNK)

    def get(self, key: str) -> bytes:
        with s3_faults("reading content"):
            return bytes(obstore.get(self.store, key).bytes())

    def local_path(self, key: str) -> None:
        return None

    def url(self, key: str, expires_seconds: int) -> str:
        with s3_faults("signing a URL"):
            return str(obstore.sign(self.store, "GET", key, timedelta(seconds=expires_seconds)))

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError), s3_faults("deleting content"):
            obstore.delete(self.store, key)

    def _list(self, prefix: str) -> Iterator[ObjectMeta]:
        with s3_faults("listing content"):
            for batch in obstore.list(self.store, prefix=prefix or None):
                yield from batch

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        for meta in self._list(prefix):
            if not meta["path"].startswith(TMP_PREFIX):
                yield meta["path"]

    def stale_uploads(self, older_than: float) -> Iterator[str]:
        cutoff = time.time() - older_than
        for meta in self._list(TMP_PREFIX):
            if meta["last_modified"].timestamp() < cutoff:
                yield meta["path"].removeprefix(TMP_PREFIX)

    def remove_stale_upload(self, upload_id: str) -> None:
        if "/" in upload_id or not upload_id:
            raise ValueError(f"invalid upload id {upload_id!r}")
        self.delete(TMP_PREFIX + upload_id)

    def check_writable(self) -> None:
        probe = f"{TMP_PREFIX}probe-{uuid.uuid4().hex}"
        self.put(probe, b"")
        self.delete(probe)

"""The storage interface every backend implements."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, Protocol


class BlobWriter(Protocol):
    """An upload in progress: invisible under any key until ``commit``."""

    def write(self, data: bytes) -> None: ...

    def commit(self, key: str) -> None:
        """Make the bytes durable and visible under ``key``; replaces nothing already there."""

    def abort(self) -> None: ...


class BlobStore(Protocol):
    def writer(self) -> BlobWriter: ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int | None: ...

    def modified(self, key: str) -> float | None:
        """Last-modified time as a Unix timestamp, None if absent."""

    def open(self, key: str) -> BinaryIO: ...

    def local_path(self, key: str) -> str | None:
        """A filesystem path for zero-copy serving, where the backend has one."""

    def delete(self, key: str) -> None: ...

    def iter_keys(self) -> Iterator[str]: ...

    def stale_uploads(self, older_than: float) -> Iterator[str]:
        """Leftovers of uploads that never committed (a killed process), by opaque id."""

    def remove_stale_upload(self, upload_id: str) -> None: ...

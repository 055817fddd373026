"""The storage interface every backend implements.

Content is addressed by key and immutable: the bytes under a key never change, so placing a
key twice is harmless. Metadata decides visibility; storage only keeps bytes. A writer's
bytes are invisible until ``place``; ``place`` may be repeated (the writer keeps its own
copy until ``close``), which lets a caller re-place content that a concurrent deletion
removed between placing and recording it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, Protocol


class BlobWriter(Protocol):
    def write(self, data: bytes) -> None: ...

    def finish(self) -> None:
        """Make the written bytes durable; no more writes after this."""

    def place(self, key: str) -> None:
        """Make the bytes visible under ``key`` (replacing whatever is there)."""

    def close(self) -> None:
        """Drop the writer's own copy; never removes what was placed."""


class BlobStore(Protocol):
    def writer(self) -> BlobWriter: ...

    def size(self, key: str) -> int | None:
        """The stored size, None if absent."""

    def modified(self, key: str) -> float | None:
        """Last-modified time as a Unix timestamp, None if absent."""

    def open(self, key: str) -> BinaryIO:
        """Raises FileNotFoundError if absent."""

    def local_path(self, key: str) -> str | None:
        """A filesystem path for zero-copy serving, where the backend has one."""

    def delete(self, key: str) -> None: ...

    def iter_keys(self) -> Iterator[str]: ...

    def stale_uploads(self, older_than: float) -> Iterator[str]:
        """Leftovers of uploads that never committed (a killed process), by opaque id."""

    def remove_stale_upload(self, upload_id: str) -> None: ...

    def check_writable(self) -> None:
        """Raise StorageFull or Unavailable unless a new upload could be stored now."""

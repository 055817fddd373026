"""The storage interface every backend implements (local files, S3-compatible buckets).

Content is addressed by key and immutable: the bytes under a key never change, so placing a
key twice is harmless. Metadata decides visibility; storage only keeps bytes. A writer's
bytes are invisible until ``place``; ``place`` may be repeated (the writer keeps its own
copy until ``close``), which lets a caller re-place content that a concurrent deletion
removed between placing and recording it. A writer closed before ``finish`` leaves nothing
behind: a failed verification stores no object.

Deleting content is always done with its metadata row gone, holding the row's lock (see
``flywheel.db.engine.lock``); recording content checks, holding the same lock, that the
bytes are still there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
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
    # A local directory for scratch files (a resumable gRPC upload's spool), whatever the
    # backend.
    tmp_dir: Path

    def describe(self) -> str:
        """Where the bytes are, for logs and messages; never a credential."""

    def writer(self) -> BlobWriter: ...

    def put(self, key: str, data: bytes) -> None:
        """Store a small blob in one piece, atomically."""

    def size(self, key: str) -> int | None:
        """The stored size, None if absent."""

    def modified(self, key: str) -> float | None:
        """Last-modified time as a Unix timestamp, None if absent."""

    def open(self, key: str) -> BinaryIO:
        """Raises FileNotFoundError if absent."""

    def get(self, key: str) -> bytes:
        """A small blob's bytes in one piece; raises FileNotFoundError if absent."""

    def local_path(self, key: str) -> str | None:
        """A filesystem path for zero-copy serving, where the backend has one."""

    def url(self, key: str, expires_seconds: int) -> str | None:
        """A short-lived URL a client may GET the blob from directly, where the backend can
        sign one (without checking that the blob exists)."""

    def delete(self, key: str) -> None:
        """Remove the blob; removing one that is already gone is no error."""

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Every stored key starting with ``prefix`` (uploads in progress excluded)."""

    def stale_uploads(self, older_than: float) -> Iterator[str]:
        """Leftovers of uploads that never committed (a killed process), by opaque id."""

    def remove_stale_upload(self, upload_id: str) -> None: ...

    def check_writable(self) -> None:
        """Raise StorageFull or Unavailable unless a new upload could be stored now."""

"""Blobs as files under a data directory, fanned out by key prefix."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from flywheel.storage.faults import storage_faults

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}(/[A-Za-z0-9][A-Za-z0-9._-]{0,199}){0,3}")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBlobWriter:
    def __init__(self, store: LocalBlobStore) -> None:
        self._store = store
        with storage_faults("starting an upload"):
            fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="upload-")
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._path = name

    def write(self, data: bytes) -> None:
        with storage_faults("writing an upload"):
            self._file.write(data)

    def finish(self) -> None:
        with storage_faults("storing an upload"):
            os.fsync(self._file.fileno())
            self._file.close()

    def place(self, key: str) -> None:
        final = self._store.local_path(key)
        parent = os.path.dirname(final)
        # A hard link to a fresh name, then a rename over the key: atomic, replaces a short
        # or damaged file, and keeps our copy for another placement.
        staged = f"{parent}/.{os.path.basename(final)}.{uuid.uuid4().hex}"
        with storage_faults("storing an upload"):
            os.makedirs(parent, exist_ok=True)
            os.link(self._path, staged)
            try:
                os.replace(staged, final)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(staged)
                raise
            _fsync_dir(parent)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root / "blobs"
        self._root_str = str(self.root)
        self.tmp_dir = root / "tmp"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def describe(self) -> str:
        return f"files in {self.root}"

    def writer(self) -> LocalBlobWriter:
        return LocalBlobWriter(self)

    def put(self, key: str, data: bytes) -> None:
        writer = self.writer()
        try:
            writer.write(data)
            writer.finish()
            writer.place(key)
        finally:
            writer.close()

    def size(self, key: str) -> int | None:
        try:
            return os.stat(self.local_path(key)).st_size
        except FileNotFoundError:
            return None

    def modified(self, key: str) -> float | None:
        try:
            return os.stat(self.local_path(key)).st_mtime
        except FileNotFoundError:
            return None

    def open(self, key: str) -> BinaryIO:
        return open(self.local_path(key), "rb")

    def get(self, key: str) -> bytes:
        with storage_faults("reading content"), self.open(key) as f:
            return f.read()

    def local_path(self, key: str) -> str:
        # Two levels of fan-out keep directories small at millions of blobs. Plain string
        # joins: this runs for every blob served, and pathlib costs more.
        if not _KEY.fullmatch(key) or ".." in key:
            raise ValueError(f"invalid blob key {key!r}")
        head, _, name = key.rpartition("/")
        return f"{self._root_str}/{head}/{name[:2]}/{name}" if head else \
            f"{self._root_str}/{name[:2]}/{name}"

    def url(self, key: str, expires_seconds: int) -> None:
        return None

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError), storage_faults("deleting content"):
            os.unlink(self.local_path(key))

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        for dirpath, _dirs, files in os.walk(self.root):
            rel = Path(dirpath).relative_to(self.root)
            # drop the fan-out level to recover the key's own prefix
            head = rel.parent.as_posix() if rel.parent != Path(".") else ""
            for name in files:
                key = f"{head}/{name}" if head else name
                if not name.startswith(".") and key.startswith(prefix):
                    yield key

    def stale_uploads(self, older_than: float) -> Iterator[str]:
        cutoff = time.time() - older_than
        for entry in os.scandir(self.tmp_dir):
            with contextlib.suppress(FileNotFoundError):
                if entry.is_file() and entry.stat().st_mtime < cutoff:
                    yield entry.name

    def remove_stale_upload(self, upload_id: str) -> None:
        if "/" in upload_id or upload_id.startswith("."):
            raise ValueError(f"invalid upload id {upload_id!r}")
        with contextlib.suppress(FileNotFoundError):
            (self.tmp_dir / upload_id).unlink()

    def check_writable(self) -> None:
        with storage_faults("checking that uploads can be stored"):
            fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix="probe-")
            try:
                os.write(fd, b"\0" * 4096)
            finally:
                os.close(fd)
                os.unlink(name)

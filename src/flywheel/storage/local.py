"""Blobs as files under a data directory, fanned out by key prefix."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}(/[A-Za-z0-9][A-Za-z0-9._-]{0,199}){0,3}")


class LocalBlobWriter:
    def __init__(self, store: LocalBlobStore) -> None:
        self._store = store
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="upload-")
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._path = Path(name)
        self._done = False

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def commit(self, key: str) -> None:
        final = self._store.path_for(key)
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            final.parent.mkdir(parents=True, exist_ok=True)
            # rename over an existing file is fine: same key means same content.
            os.replace(self._path, final)
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException:
            self.abort()
            raise
        self._done = True

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root / "blobs"
        self._root_str = str(self.root)
        self.tmp_dir = root / "tmp"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        return Path(self.local_path(key))

    def writer(self) -> LocalBlobWriter:
        return LocalBlobWriter(self)

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def size(self, key: str) -> int | None:
        try:
            return self.path_for(key).stat().st_size
        except FileNotFoundError:
            return None

    def modified(self, key: str) -> float | None:
        try:
            return self.path_for(key).stat().st_mtime
        except FileNotFoundError:
            return None

    def open(self, key: str) -> BinaryIO:
        return self.path_for(key).open("rb")

    def local_path(self, key: str) -> str:
        # Two levels of fan-out keep directories small at millions of blobs. Plain string
        # joins: this runs for every blob served, and pathlib costs more.
        if not _KEY.fullmatch(key) or ".." in key:
            raise ValueError(f"invalid blob key {key!r}")
        head, _, name = key.rpartition("/")
        return f"{self._root_str}/{head}/{name[:2]}/{name}" if head else \
            f"{self._root_str}/{name[:2]}/{name}"

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_for(key).unlink()

    def iter_keys(self) -> Iterator[str]:
        for dirpath, _dirs, files in os.walk(self.root):
            rel = Path(dirpath).relative_to(self.root)
            # drop the fan-out level to recover the key's own prefix
            prefix = rel.parent.as_posix() if rel.parent != Path(".") else ""
            for name in files:
                yield f"{prefix}/{name}" if prefix else name

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

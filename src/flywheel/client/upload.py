"""Uploading one store path: its NAR streamed from ``nix-store --dump`` into
``PUT /_api/v1/upload-path``, with the metadata in the ``X-Attic-Nar-Info`` header."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Protocol

from flywheel.api.upload import UploadPathNarInfo, UploadPathResult
from flywheel.client.errors import ClientError
from flywheel.client.nixstore import NarDump, PathInfo, hash_part


class Cancelled(Exception):
    """The push is being abandoned (Ctrl-C); stop streaming at the next chunk."""


class Uploader(Protocol):
    def upload_path(self, info: UploadPathNarInfo,
                    body: Iterator[bytes]) -> UploadPathResult: ...


class Dumper(Protocol):
    def dump(self, path: str) -> NarDump: ...


Progress = Callable[[int], None]


def nar_info(cache: str, info: PathInfo) -> UploadPathNarInfo:
    return UploadPathNarInfo(
        cache=cache, store_path_hash=hash_part(info.path), store_path=info.path,
        references=list(info.references), system=None, deriver=info.deriver,
        sigs=list(info.signatures), ca=info.ca, nar_hash=info.nar_hash,
        nar_size=info.nar_size)


def upload_one(server: Uploader, store: Dumper, cache: str, info: PathInfo,
               progress: Progress, cancel: threading.Event) -> UploadPathResult:
    dump = store.dump(info.path)
    try:
        def body() -> Iterator[bytes]:
            for chunk in dump.chunks():
                if cancel.is_set():
                    raise Cancelled
                progress(len(chunk))
                yield chunk

        try:
            result = server.upload_path(nar_info(cache, info), body())
        except (ClientError, OSError):
            # A dump that died mid-stream reaches the server as a short body; the dump's
            # own error says why, the server's or the socket's would not.
            dump.check()
            raise
        dump.check()
        return result
    finally:
        dump.close()

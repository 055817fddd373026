"""Streaming verification of an uploaded NAR file: hash the stored bytes and the NAR inside.

Decompression output is produced in bounded pieces so a small hostile upload cannot
expand into unbounded memory (a decompression bomb); only sizes and hashes are kept.
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
from collections.abc import Callable
from typing import Protocol

import zstandard

from flywheel.nix.nar import NarError, NarValidator

_OUT_CHUNK = 1 << 20

COMPRESSION_EXTENSIONS = {"none": "", "xz": ".xz", "zstd": ".zst", "bzip2": ".bz2"}


class UploadError(ValueError):
    """The upload is malformed or does not match what it claims; safe to show the client."""


class _Decoder(Protocol):
    def feed(self, data: bytes) -> None: ...

    def finish(self) -> None: ...


class _Identity:
    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self._sink = sink

    def feed(self, data: bytes) -> None:
        self._sink(data)

    def finish(self) -> None:
        pass


class _Bounded:
    """xz and bzip2 through the stdlib's ``max_length`` interface."""

    def __init__(self, dec: lzma.LZMADecompressor | bz2.BZ2Decompressor,
                 sink: Callable[[bytes], None], name: str) -> None:
        self._dec, self._sink, self._name = dec, sink, name

    def feed(self, data: bytes) -> None:
        if self._dec.eof:
            if data:
                raise UploadError(f"trailing data after the end of the {self._name} stream")
            return
        try:
            out = self._dec.decompress(data, _OUT_CHUNK)
            self._sink(out)
            while not self._dec.eof and not self._dec.needs_input:
                self._sink(self._dec.decompress(b"", _OUT_CHUNK))
        except (lzma.LZMAError, OSError, EOFError) as e:
            raise UploadError(f"corrupt {self._name} data: {e}") from None
        if self._dec.eof and self._dec.unused_data:
            raise UploadError(f"trailing data after the end of the {self._name} stream")

    def finish(self) -> None:
        if not self._dec.eof:
            raise UploadError(f"truncated {self._name} data")


class _Zstd:
    """zstd through a stream writer, which hands output onward in bounded buffers."""

    class _Sink:
        def __init__(self, sink: Callable[[bytes], None]) -> None:
            self.sink = sink

        def write(self, data: bytes) -> int:
            self.sink(bytes(data))
            return len(data)

    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self._writer = zstandard.ZstdDecompressor(max_window_size=1 << 27).stream_writer(
            self._Sink(sink),  # type: ignore[arg-type]  # any object with write() will do
            write_size=_OUT_CHUNK, write_return_read=True, closefd=False)
        self._seen = False

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self._seen = True
        try:
            self._writer.write(data)
        except zstandard.ZstdError as e:
            raise UploadError(f"corrupt zstd data: {e}") from None

    def finish(self) -> None:
        try:
            self._writer.flush()  # type: ignore[no-untyped-call]
        except zstandard.ZstdError as e:
            raise UploadError(f"corrupt zstd data: {e}") from None
        if not self._seen:
            raise UploadError("empty zstd stream")


class NarFileVerifier:
    """Fed the stored bytes in order; afterwards knows both hashes and sizes.

    The decompressed stream is also checked against the NAR grammar, so a file whose
    hash matches a forged narinfo but is no archive at all is refused as well."""

    def __init__(self, compression: str, max_nar_size: int) -> None:
        if compression not in COMPRESSION_EXTENSIONS:
            raise UploadError(f"unsupported compression {compression!r} "
                              f"(supported: {', '.join(COMPRESSION_EXTENSIONS)})")
        self.compression = compression
        self._max_nar_size = max_nar_size
        self._file_hash = hashlib.sha256()
        self._nar_hash = hashlib.sha256()
        self._nar = NarValidator()
        self.file_size = 0
        self.nar_size = 0
        decoder: _Decoder
        if compression == "none":
            decoder = _Identity(self._on_nar)
        elif compression == "xz":
            decoder = _Bounded(lzma.LZMADecompressor(), self._on_nar, "xz")
        elif compression == "bzip2":
            decoder = _Bounded(bz2.BZ2Decompressor(), self._on_nar, "bzip2")
        else:
            decoder = _Zstd(self._on_nar)
        self._decoder = decoder

    def _on_nar(self, data: bytes) -> None:
        if not data:
            return
        self.nar_size += len(data)
        if self.nar_size > self._max_nar_size:
            raise UploadError(f"NAR exceeds the server's limit of {self._max_nar_size} bytes")
        self._nar_hash.update(data)
        try:
            self._nar.feed(data)
        except NarError as e:
            raise UploadError(f"not a valid NAR: {e}") from None

    def feed(self, data: bytes) -> None:
        self.file_size += len(data)
        self._file_hash.update(data)
        self._decoder.feed(data)

    def finish(self) -> None:
        self._decoder.finish()
        try:
            self._nar.finish()
        except NarError as e:
            raise UploadError(f"not a valid NAR: {e}") from None

    @property
    def file_sha256(self) -> bytes:
        return self._file_hash.digest()

    @property
    def nar_sha256(self) -> bytes:
        return self._nar_hash.digest()

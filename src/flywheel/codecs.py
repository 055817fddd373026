"""Bounded streaming decompression for uploads: xz, bzip2 and zstd.

Every codec goes through the same ``max_length`` interface (the stdlib's for xz and bzip2,
PEP 784's for zstd), so a few hostile kilobytes cannot expand into unbounded memory, and
truncation is detected the same way for all. Concatenated streams are accepted, as the
reference tools do; anything after the last complete stream must itself be a stream.
"""

from __future__ import annotations

import bz2
import lzma
from collections.abc import Callable
from typing import Protocol

try:
    from compression import zstd  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # Python < 3.14
    from backports import zstd  # type: ignore[no-redef,unused-ignore]

OUTPUT_CHUNK = 1 << 20


class CodecError(ValueError):
    """Corrupt, truncated or unsupported compressed data; safe to show the client."""


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def needs_input(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


_FACTORIES: dict[str, Callable[[], _Decompressor]] = {
    "xz": lzma.LZMADecompressor,
    "bzip2": bz2.BZ2Decompressor,
    "zstd": zstd.ZstdDecompressor,
}
_ERRORS = (lzma.LZMAError, OSError, EOFError, zstd.ZstdError)


class StreamDecoder:
    """Push compressed bytes in; decompressed bytes come out to ``sink`` in pieces of at
    most ``OUTPUT_CHUNK``. ``finish`` raises if the data ended mid-stream."""

    def __init__(self, compression: str, sink: Callable[[bytes], object]) -> None:
        if compression != "none" and compression not in _FACTORIES:
            raise CodecError(f"unsupported compression {compression!r}")
        self._name = compression
        self._sink = sink
        self._dec = _FACTORIES[compression]() if compression != "none" else None
        self._started = False

    def feed(self, data: bytes) -> None:
        if self._dec is None:
            if data:
                self._sink(data)
            return
        try:
            while data:
                self._started = True
                self._sink(self._dec.decompress(data, OUTPUT_CHUNK))
                while not self._dec.eof and not self._dec.needs_input:
                    self._sink(self._dec.decompress(b"", OUTPUT_CHUNK))
                data = b""
                if self._dec.eof:
                    data = self._dec.unused_data
                    self._dec = _FACTORIES[self._name]()
                    self._started = False
        except _ERRORS as e:
            raise CodecError(f"corrupt {self._name} data: {e}") from None

    def finish(self) -> None:
        if self._dec is not None and self._started:
            raise CodecError(f"truncated {self._name} data")


def zstd_compress(data: bytes, level: int = 1) -> bytes:
    return bytes(zstd.compress(data, level))


class ZstdStreamCompressor:
    def __init__(self, level: int = 1) -> None:
        self._c = zstd.ZstdCompressor(level)

    def compress(self, data: bytes) -> bytes:
        return bytes(self._c.compress(data))

    def flush(self) -> bytes:
        return bytes(self._c.flush())

"""Streaming verification of an uploaded NAR file: hash the stored bytes and the NAR inside.

Decompression output is produced in bounded pieces so a small hostile upload cannot
expand into unbounded memory, and the expansion ratio is capped, so it cannot cost
unbounded CPU either (a decompression bomb); only sizes and hashes are kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from flywheel.codecs import CodecError, StreamDecoder
from flywheel.errors import Invalid, TooLarge
from flywheel.nix.nar import NarError, NarValidator

COMPRESSION_EXTENSIONS = {"none": "", "xz": ".xz", "zstd": ".zst", "bzip2": ".bz2"}
# A NAR may expand past the ratio by this much, so small files of highly repetitive
# content (a few MiB of zeros) are never refused.
RATIO_ALLOWANCE = 64 << 20


@dataclass(frozen=True)
class NarLimits:
    max_nar_size: int
    # How many times its compressed size a NAR may be. Real closures stay far below 100:
    # the ratio only stops bombs (hundreds of kilobytes claiming gigabytes).
    max_compression_ratio: int = 1000

    @property
    def max_file_size(self) -> int:
        """The largest stored file a NAR within the limit can need: incompressible data
        grows a little when compressed, and nothing legitimate grows more than this."""
        return self.max_nar_size + self.max_nar_size // 64 + (1 << 20)


class NarFileVerifier:
    """Fed the stored bytes in order; afterwards knows both hashes and sizes.

    The decompressed stream is also checked against the NAR grammar, so a file whose
    hash matches a forged narinfo but is no archive at all is refused as well."""

    def __init__(self, compression: str, limits: NarLimits,
                 nar_sink: Callable[[bytes], object] | None = None) -> None:
        if compression not in COMPRESSION_EXTENSIONS:
            raise Invalid(f"unsupported compression {compression[:20]!r} "
                          f"(supported: {', '.join(COMPRESSION_EXTENSIONS)})")
        self.compression = compression
        self._limits = limits
        self._file_hash = hashlib.sha256()
        self._nar_hash = hashlib.sha256()
        self._nar = NarValidator()
        self.file_size = 0
        self.nar_size = 0
        self._decoder = StreamDecoder(compression, self._on_nar)
        # Receives the NAR itself once checked (content-defined chunking cuts it).
        self._nar_sink = nar_sink

    def _on_nar(self, data: bytes) -> None:
        if not data:
            return
        self.nar_size += len(data)
        if self.nar_size > self._limits.max_nar_size:
            raise TooLarge(f"NAR exceeds the server's limit of {self._limits.max_nar_size} "
                           "bytes")
        if self.nar_size > self.file_size * self._limits.max_compression_ratio + \
                RATIO_ALLOWANCE:
            raise Invalid(f"the NAR expands past the server's limit of "
                          f"{self._limits.max_compression_ratio} times its compressed size")
        self._nar_hash.update(data)
        try:
            self._nar.feed(data)
        except NarError as e:
            raise Invalid(f"not a valid NAR: {e}") from None
        if self._nar_sink is not None:
            self._nar_sink(data)

    def feed(self, data: bytes) -> None:
        self.file_size += len(data)
        if self.file_size > self._limits.max_file_size:
            raise TooLarge(f"NAR file exceeds the server's limit of "
                           f"{self._limits.max_file_size} bytes")
        self._file_hash.update(data)
        try:
            self._decoder.feed(data)
        except CodecError as e:
            raise Invalid(str(e)) from None

    def finish(self) -> None:
        try:
            self._decoder.finish()
        except CodecError as e:
            raise Invalid(str(e)) from None
        try:
            self._nar.finish()
        except NarError as e:
            raise Invalid(f"not a valid NAR: {e}") from None

    @property
    def file_sha256(self) -> bytes:
        return self._file_hash.digest()

    @property
    def nar_sha256(self) -> bytes:
        return self._nar_hash.digest()

"""Bounded streaming decompression: output in pieces of at most OUTPUT_CHUNK whatever the
input claims, truncation and trailing garbage detected, concatenated streams accepted."""

from __future__ import annotations

import bz2
import lzma

import pytest
import zstandard

from flywheel.codecs import OUTPUT_CHUNK, CodecError, StreamDecoder, ZstdStreamCompressor

COMPRESS = {"xz": lzma.compress, "bzip2": bz2.compress,
            "zstd": lambda d: zstandard.ZstdCompressor().compress(d)}


def decode(compression: str, data: bytes, piece: int = 1000) -> tuple[bytes, int]:
    out: list[bytes] = []
    dec = StreamDecoder(compression, out.append)
    for i in range(0, len(data), piece):
        dec.feed(data[i:i + piece])
    dec.finish()
    return b"".join(out), max((len(o) for o in out), default=0)


@pytest.mark.parametrize("compression", sorted(COMPRESS))
def test_round_trip_in_bounded_pieces(compression: str) -> None:
    data = b"\0" * (8 * OUTPUT_CHUNK)  # compresses to almost nothing
    packed = COMPRESS[compression](data)
    assert len(packed) < OUTPUT_CHUNK
    got, largest = decode(compression, packed, piece=len(packed))
    assert got == data
    assert largest <= OUTPUT_CHUNK


@pytest.mark.parametrize("compression", sorted(COMPRESS))
def test_concatenated_streams_are_one_stream(compression: str) -> None:
    packed = COMPRESS[compression](b"first ") + COMPRESS[compression](b"second")
    assert decode(compression, packed, piece=7)[0] == b"first second"


@pytest.mark.parametrize("compression", sorted(COMPRESS))
def test_truncation_is_detected(compression: str) -> None:
    packed = COMPRESS[compression](b"x" * 100_000)
    with pytest.raises(CodecError, match="truncated"):
        decode(compression, packed[:-5])


@pytest.mark.parametrize("compression", sorted(COMPRESS))
def test_garbage_after_a_stream_is_refused(compression: str) -> None:
    with pytest.raises(CodecError):
        decode(compression, COMPRESS[compression](b"ok") + b"garbage!")


def test_identity_passes_bytes_through() -> None:
    assert decode("none", b"plain bytes", piece=3)[0] == b"plain bytes"


def test_unsupported_compression_is_refused() -> None:
    with pytest.raises(CodecError, match="unsupported"):
        StreamDecoder("br", lambda _d: None)


def test_the_stream_compressor_makes_one_frame_readers_accept() -> None:
    c = ZstdStreamCompressor(level=3)
    data = b"".join(c.compress(b"piece %d " % i) for i in range(1000)) + c.flush()
    assert zstandard.ZstdDecompressor().decompressobj().decompress(data) == \
        b"".join(b"piece %d " % i for i in range(1000))

"""Nix ARchives: a streaming validator and a serializer matching ``nix-store --dump``.

Every NAR field is a "string": a little-endian u64 length, the bytes, and zero
padding to a multiple of 8. The grammar accepted is exactly what Nix writes::

    nar       = "nix-archive-1" node
    node      = "(" "type" ( regular | symlink | directory ) ")"
    regular   = "regular" [ "executable" "" ] "contents" <bytes>
    symlink   = "symlink" "target" <target>
    directory = "directory" { "entry" "(" "name" <name> "node" node ")" }

Nix's own reader tolerates some reorderings of these fields; the validator does
not, because a NAR that differs from the canonical dump hashes differently and
would never match its narinfo anyway.
"""

import os
import stat
from collections.abc import Iterator
from enum import Enum, auto

MAGIC = b"nix-archive-1"
MAX_DEPTH = 256
MAX_NAME_LEN = 4096
DUMP_CHUNK_SIZE = 256 * 1024


class NarError(ValueError):
    pass


class _S(Enum):
    """What the next string in the stream means."""

    MAGIC = auto()
    NODE_OPEN = auto()
    TYPE_TAG = auto()
    TYPE = auto()
    REGULAR_TAG = auto()
    EXECUTABLE_VALUE = auto()
    CONTENTS_TAG = auto()
    CONTENTS = auto()
    TARGET_TAG = auto()
    TARGET = auto()
    NODE_CLOSE = auto()
    DIRECTORY_TAG = auto()
    ENTRY_OPEN = auto()
    NAME_TAG = auto()
    NAME = auto()
    NODE_TAG = auto()
    ENTRY_CLOSE = auto()
    DONE = auto()


# Each fixed token or set of alternatives, indexed by state; strings longer than
# the longest alternative are refused from their length alone, before any buffering.
_TOKENS: dict[_S, tuple[bytes, ...]] = {
    _S.MAGIC: (MAGIC,),
    _S.NODE_OPEN: (b"(",),
    _S.TYPE_TAG: (b"type",),
    _S.TYPE: (b"regular", b"symlink", b"directory"),
    _S.REGULAR_TAG: (b"executable", b"contents"),
    _S.EXECUTABLE_VALUE: (b"",),
    _S.CONTENTS_TAG: (b"contents",),
    _S.TARGET_TAG: (b"target",),
    _S.NODE_CLOSE: (b")",),
    _S.DIRECTORY_TAG: (b"entry", b")"),
    _S.ENTRY_OPEN: (b"(",),
    _S.NAME_TAG: (b"name",),
    _S.NODE_TAG: (b"node",),
    _S.ENTRY_CLOSE: (b")",),
}
# States whose only successor does not depend on the value read.
_NEXT: dict[_S, _S] = {
    _S.MAGIC: _S.NODE_OPEN,
    _S.NODE_OPEN: _S.TYPE_TAG,
    _S.TYPE_TAG: _S.TYPE,
    _S.EXECUTABLE_VALUE: _S.CONTENTS_TAG,
    _S.CONTENTS_TAG: _S.CONTENTS,
    _S.CONTENTS: _S.NODE_CLOSE,
    _S.TARGET_TAG: _S.TARGET,
    _S.ENTRY_OPEN: _S.NAME_TAG,
    _S.NAME_TAG: _S.NAME,
    _S.NODE_TAG: _S.NODE_OPEN,
    _S.ENTRY_CLOSE: _S.DIRECTORY_TAG,
}
_TYPE_NEXT = {b"regular": _S.REGULAR_TAG, b"symlink": _S.TARGET_TAG, b"directory": _S.DIRECTORY_TAG}
_MAX_LEN: dict[_S, int] = {s: max(map(len, toks)) for s, toks in _TOKENS.items()}
_MAX_LEN[_S.TARGET] = MAX_NAME_LEN
_MAX_LEN[_S.NAME] = MAX_NAME_LEN


def _alternatives(state: _S) -> str:
    return " or ".join(map(repr, _TOKENS[state]))


def _padding(n: int) -> int:
    return -n % 8


class _Phase(Enum):
    LENGTH = auto()
    DATA = auto()
    SKIP = auto()
    PADDING = auto()


class NarValidator:
    """Checks a NAR incrementally; memory use is bounded by MAX_DEPTH and
    MAX_NAME_LEN, never by the size of file contents, which are skipped."""

    def __init__(self) -> None:
        self._state = _S.MAGIC
        self._phase = _Phase.LENGTH
        self._buf = bytearray()
        self._need = 8
        self._length = 0
        self._value = b""
        self._skip = 0
        # The last entry name of each open directory, innermost last.
        self._dirs: list[bytes | None] = []
        self._failed = False

    def feed(self, data: bytes) -> None:
        if self._failed:
            raise NarError("NAR validator already failed")
        try:
            self._feed(memoryview(data))
        except NarError:
            self._failed = True
            raise

    def finish(self) -> None:
        if self._failed:
            raise NarError("NAR validator already failed")
        if self._state is not _S.DONE:
            self._failed = True
            raise NarError("NAR is truncated")

    def _feed(self, data: memoryview) -> None:
        pos, end = 0, len(data)
        while pos < end:
            if self._state is _S.DONE:
                raise NarError("trailing data after the end of the NAR")
            if self._phase is _Phase.SKIP:
                take = min(self._skip, end - pos)
                pos += take
                self._skip -= take
                if self._skip == 0:
                    self._start_padding()
                continue
            take = min(self._need - len(self._buf), end - pos)
            self._buf += data[pos : pos + take]
            pos += take
            if len(self._buf) == self._need:
                chunk = bytes(self._buf)
                self._buf.clear()
                self._on_chunk(chunk)

    def _on_chunk(self, chunk: bytes) -> None:
        if self._phase is _Phase.LENGTH:
            self._on_length(int.from_bytes(chunk, "little"))
        elif self._phase is _Phase.DATA:
            self._value = chunk
            self._start_padding()
        else:
            if chunk.count(0) != len(chunk):
                raise NarError("non-zero padding")
            self._on_string(self._value)

    def _on_length(self, length: int) -> None:
        self._length = length
        self._value = b""
        if self._state is _S.CONTENTS:
            self._skip = length
            if length:
                self._phase = _Phase.SKIP
            else:
                self._start_padding()
            return
        if length > _MAX_LEN[self._state]:
            if self._state in _TOKENS:
                raise NarError(f"expected {_alternatives(self._state)}, got {length} bytes")
            what = "file name" if self._state is _S.NAME else "symlink target"
            raise NarError(f"{what} of {length} bytes is longer than {MAX_NAME_LEN}")
        if length:
            self._phase, self._need = _Phase.DATA, length
        else:
            self._start_padding()

    def _start_padding(self) -> None:
        pad = _padding(self._length)
        if pad:
            self._phase, self._need = _Phase.PADDING, pad
        else:
            self._on_string(self._value)

    def _on_string(self, value: bytes) -> None:
        self._phase, self._need = _Phase.LENGTH, 8
        state = self._state
        if state in _TOKENS and value not in _TOKENS[state]:
            raise NarError(f"expected {_alternatives(state)}, got {value!r}")
        if state in _NEXT:
            self._state = _NEXT[state]
        elif state is _S.TYPE:
            if value == b"directory":
                if len(self._dirs) >= MAX_DEPTH:
                    raise NarError(f"directories nested deeper than {MAX_DEPTH}")
                self._dirs.append(None)
            self._state = _TYPE_NEXT[value]
        elif state is _S.REGULAR_TAG:
            self._state = _S.EXECUTABLE_VALUE if value == b"executable" else _S.CONTENTS
        elif state is _S.TARGET:
            if not value or b"\0" in value:
                raise NarError(f"invalid symlink target {value!r}")
            self._state = _S.NODE_CLOSE
        elif state is _S.NAME:
            self._check_name(value)
            self._state = _S.NODE_TAG
        elif state is _S.DIRECTORY_TAG and value == b"entry":
            self._state = _S.ENTRY_OPEN
        else:
            # The ")" that closes a node: NODE_CLOSE, or DIRECTORY_TAG's ")".
            if state is _S.DIRECTORY_TAG:
                self._dirs.pop()
            self._state = _S.ENTRY_CLOSE if self._dirs else _S.DONE

    def _check_name(self, name: bytes) -> None:
        if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
            raise NarError(f"invalid file name {name!r}")
        prev = self._dirs[-1]
        # Nix compares names as unsigned bytes, which is also Python's bytes order.
        if prev is not None and name <= prev:
            raise NarError(f"directory entry {name!r} is not sorted after {prev!r}")
        self._dirs[-1] = name


def _str(s: bytes) -> bytes:
    return len(s).to_bytes(8, "little") + s + bytes(_padding(len(s)))


def dump_path(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """Serialize ``path`` as ``nix-store --dump`` does, in chunks of about
    DUMP_CHUNK_SIZE; small fields are coalesced so consumers see few, large chunks."""
    buf = bytearray(_str(MAGIC))
    yield from _dump(os.fsencode(path), buf)
    if buf:
        yield bytes(buf)


def _dump(path: bytes, buf: bytearray) -> Iterator[bytes]:
    st = os.lstat(path)
    buf += _str(b"(")
    if stat.S_ISREG(st.st_mode):
        buf += _str(b"type") + _str(b"regular")
        # Nix looks only at the owner's execute bit.
        if st.st_mode & stat.S_IXUSR:
            buf += _str(b"executable") + _str(b"")
        buf += _str(b"contents") + st.st_size.to_bytes(8, "little")
        yield from _dump_contents(path, st.st_size, buf)
        buf += bytes(_padding(st.st_size))
    elif stat.S_ISLNK(st.st_mode):
        buf += _str(b"type") + _str(b"symlink") + _str(b"target") + _str(os.readlink(path))
    elif stat.S_ISDIR(st.st_mode):
        buf += _str(b"type") + _str(b"directory")
        for name in sorted(os.listdir(path)):
            buf += _str(b"entry") + _str(b"(") + _str(b"name") + _str(name) + _str(b"node")
            yield from _dump(path + b"/" + name, buf)
            buf += _str(b")")
    else:
        raise NarError(f"{os.fsdecode(path)!r} is neither a regular file, symlink nor directory")
    buf += _str(b")")
    if len(buf) >= DUMP_CHUNK_SIZE:
        yield bytes(buf)
        buf.clear()


def _dump_contents(path: bytes, size: int, buf: bytearray) -> Iterator[bytes]:
    # O_NOFOLLOW: the path was lstat'ed as a regular file; if it has since been
    # swapped for a symlink, fail rather than archive whatever it points to.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with open(fd, "rb", buffering=0) as f:
        remaining = size
        while remaining:
            chunk = f.read(min(DUMP_CHUNK_SIZE, remaining))
            if not chunk:
                raise NarError(f"{os.fsdecode(path)!r} shrank while being archived")
            remaining -= len(chunk)
            if len(buf) + len(chunk) <= DUMP_CHUNK_SIZE:
                buf += chunk
            else:
                if buf:
                    yield bytes(buf)
                    buf.clear()
                yield chunk

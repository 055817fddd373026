"""Payloads a hostile client sends, and ways to watch what they cost the server."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path


def nar_str(s: bytes) -> bytes:
    return len(s).to_bytes(8, "little") + s + bytes(-len(s) % 8)


def zstd_bomb(prefix: bytes, expanded: int) -> bytes:
    """A hand-built zstd frame: one raw block with ``prefix``, then run-length blocks of
    zeros, 4 bytes per 128 KiB; the frame declares a 128 MiB window and no content size."""
    block = 128 * 1024

    def header(last: bool, kind: int, size: int) -> bytes:
        return (int(last) | kind << 1 | size << 3).to_bytes(3, "little")

    out = bytearray(b"\x28\xb5\x2f\xfd" + b"\x00" + bytes([(27 - 10) << 3]))
    out += header(False, 0, len(prefix)) + prefix
    count = expanded // block
    for i in range(count):
        out += header(i == count - 1, 1, block) + b"\0"
    return bytes(out)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def processes_running(pid: int, module: str) -> list[int]:
    """The processes below ``pid`` whose command line names ``module``."""
    found = []
    for child in descendants(pid):
        with contextlib.suppress(OSError):
            if module.encode() in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
    return found


def reset_peak_rss(pid: int) -> None:
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_kib(pid: int) -> int:
    m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    assert m
    return int(m.group(1))

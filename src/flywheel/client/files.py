"""Atomic file replacement: readers see the old file or the new one, never half of it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def atomic_write(path: Path, text: str, mode: int, dir_mode: int = 0o755) -> None:
    """Write ``text`` to ``path`` through a temp file in the same directory, created with
    ``mode`` from the start (a secret is never readable by others, not even briefly),
    fsynced, then renamed over the target. Missing directories get ``dir_mode``."""
    path.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        # O_CREAT's mode is filtered by the umask; set it exactly.
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def writable_target(path: Path) -> Path:
    """The file to rewrite for ``path``: a symlink's target, so a link someone set up on
    purpose stays a link. Refuses targets in the Nix store (home-manager links nix.conf
    there), which are read-only by design."""
    target = path.resolve() if path.is_symlink() else path
    if str(target).startswith("/nix/store/"):
        raise PermissionError(f"{path} links into the Nix store ({target}); it is managed "
                              "declaratively")
    return target


def existing_mode(path: Path, default: int) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return default

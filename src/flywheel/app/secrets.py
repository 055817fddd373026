"""Files only the server's user may read: the data directory, the token secret, the state
key, the admin token. The metadata database holds every cache's secret signing key, so the
whole data directory is private."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from flywheel.auth.tokens import new_secret
from flywheel.state.crypto import new_key_text

log = logging.getLogger(__name__)

TOKEN_SECRET_FILE = "token-secret"
STATE_KEY_FILE = "state-key"
# New files: owner read/write only; new directories: owner only.
PRIVATE_UMASK = 0o077


def make_private(data_dir: Path) -> None:
    """Create the data directory owner-only, and tighten an existing one that is not."""
    os.umask(PRIVATE_UMASK)
    data_dir.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if mode & 0o077:
        data_dir.chmod(0o700)
        log.warning("data directory %s was readable by others (mode %o); now 0700",
                    data_dir, mode)
        for entry in data_dir.iterdir():
            if entry.is_file() and stat.S_IMODE(entry.stat().st_mode) & 0o077:
                entry.chmod(0o600)


def write_private_file(path: Path, content: str) -> None:
    """Create a file only its owner can read, atomically, never widening an existing one."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_or_create_token_secret(data_dir: Path) -> str:
    path = data_dir / TOKEN_SECRET_FILE
    if not path.exists():
        write_private_file(path, new_secret() + "\n")
        log.info("created the token-signing secret in %s", path)
    return path.read_text().strip()


def load_or_create_state_key(data_dir: Path) -> str:
    """The key that encrypts state at rest, beside the token secret; its path is logged,
    never its content."""
    path = data_dir / STATE_KEY_FILE
    if not path.exists():
        # Two processes starting at once must not each write a key: state encrypted with
        # the one overwritten would be lost. Linking fails if the file exists, so one wins.
        candidate = data_dir / f".{STATE_KEY_FILE}.{os.getpid()}"
        write_private_file(candidate, new_key_text() + "\n")
        try:
            os.link(candidate, path)
            log.info("created the state encryption key in %s", path)
        except FileExistsError:
            pass
        finally:
            candidate.unlink()
    return path.read_text().strip()

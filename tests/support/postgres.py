"""A real PostgreSQL server for the suite: ``initdb`` and ``pg_ctl`` from Debian's
``postgresql`` into a temporary directory, on a free loopback port, run as the ``postgres``
user (the server refuses to run as root). No system service is involved."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.server import free_port

USER = "postgres"


def bin_dir() -> Path:
    """The newest installed server's binaries (Debian keeps them out of PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        raise AssertionError("PostgreSQL is required (./dev test installs Debian's postgresql)")
    return Path(found[-1]).parent


def _as_postgres() -> Callable[[], None] | None:
    if os.getuid() != 0:
        return None
    user = pwd.getpwnam(USER)

    def drop() -> None:
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return drop


@dataclass
class PostgresServer:
    root: Path
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.root / "pgdata"

    def _run(self, *args: str) -> None:
        proc = subprocess.run([str(bin_dir() / args[0]), *args[1:]], capture_output=True,
                              text=True, preexec_fn=_as_postgres(), timeout=120, cwd="/")
        if proc.returncode != 0:
            raise AssertionError(f"{args[0]} failed ({proc.returncode}):\n{proc.stdout}"
                                 f"{proc.stderr}\n{self.log()}")

    def start(self) -> PostgresServer:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            user = pwd.getpwnam(USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
            # The test's temporary tree is private to root; the server needs to reach it.
            for parent in self.root.parents:
                if parent == Path("/"):
                    break
                parent.chmod(parent.stat().st_mode | 0o011)
        self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-w", "-t", "60", "start", "-o",
                  f"-p {self.port} -k {self.root} -h 127.0.0.1 -c fsync=off "
                  "-c max_connections=200 -c full_page_writes=off")
        return self

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run([str(bin_dir() / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                            "-w", "stop"], capture_output=True, preexec_fn=_as_postgres(),
                           timeout=60, cwd="/")

    def create_database(self, name: str | None = None) -> str:
        """A fresh, empty database; returns its URL."""
        name = name or "db_" + uuid.uuid4().hex[:12]
        # From template0: copying template1 fails while another createdb copies it too.
        proc = subprocess.run([str(bin_dir() / "createdb"), "-h", "127.0.0.1", "-p",
                               str(self.port), "-U", USER, "--template=template0", name],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise AssertionError(f"createdb {name} failed ({proc.returncode}): {proc.stderr}")
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

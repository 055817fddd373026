"""The real bazel client, isolated per test: a private copy of tests/bazel/workspace and its
own ``--output_user_root``, so builds share no server, action cache or output tree.

Written against Debian's ``bazel-bootstrap`` (Bazel 4.2.3, which reports ``bazel no_version``)
and kept to flags that release understands. Bazel prints everything of interest on stderr;
after each build the line we parse is Bazel 4.2.3's process summary, for example::

    INFO: 17 processes: 6 internal, 11 local.
    INFO: 17 processes: 11 remote cache hit, 6 internal.
    INFO: 1 process: 1 internal.
    INFO: 0 processes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

WORKSPACE = Path(__file__).resolve().parent.parent / "bazel" / "workspace"

# Files every full build of WORKSPACE produces, relative to bazel-bin.
WORKSPACE_OUTPUTS = (
    "greeting.txt",
    "shout.txt",
    "blob.bin",
    "parts/one.txt",
    "parts/two.txt",
    "parts/three.txt",
    "manifest.txt",
    "message.h",
    "libgreet.a",
    "libgreet.so",
    "hello",
)
HELLO_OUTPUT = "HELLO FROM THE FLYWHEEL"

# Flags for every `bazel build`, and why:
BUILD_FLAGS = (
    # No sandbox: linux-sandbox needs user namespaces, which containers often lack. The
    # remote cache wraps whatever local strategy runs, so hits are counted the same way.
    "--spawn_strategy=local",
    # PATH etc. of actions fixed (not the caller's), so action keys are the same across
    # machines and test runs and a second client can hit what the first one uploaded.
    "--incompatible_strict_action_env",
    # Plain, parseable output.
    "--noshow_progress",
    "--color=no",
    "--curses=no",
    "--noshow_timestamps",
    # Debian's /etc/bazel/bazelrc turns on --sandbox_debug; it only adds noise.
    "--nosandbox_debug",
    # Never a cache the caller did not ask for (an rc file could name one).
    "--disk_cache=",
    "--remote_cache=",
    # A stuck server fails a test in seconds, not the default 60 s per call.
    "--remote_timeout=10",
)

_SUMMARY = re.compile(r"^INFO: (\d+) process(?:es)?(?:: (.*?))?\.\s*$", re.MULTILINE)
_PART = re.compile(r"^(\d+) (.+)$")
REMOTE_CACHE_HIT = "remote cache hit"
INTERNAL = "internal"


@dataclass(frozen=True)
class ProcessSummary:
    """Bazel's ``INFO: N processes: ...`` line: how each spawn was satisfied."""

    total: int
    remote_cache_hit: int
    # Every other kind by Bazel's own name: "internal", "local", "linux-sandbox", ...
    strategies: Mapping[str, int] = field(default_factory=dict)

    @property
    def internal(self) -> int:
        """Spawns Bazel runs itself (symlink trees, params files); never cached remotely."""
        return self.strategies.get(INTERNAL, 0)

    @property
    def executed(self) -> int:
        """Spawns really run on this machine by some strategy (cache misses)."""
        return sum(n for kind, n in self.strategies.items() if kind != INTERNAL)

    @property
    def cacheable(self) -> int:
        return self.total - self.internal

    @classmethod
    def parse(cls, output: str) -> ProcessSummary | None:
        """The last summary line in ``output``, or None when Bazel printed none."""
        matches = list(_SUMMARY.finditer(output))
        if not matches:
            return None
        total_text, parts_text = matches[-1].groups()
        counts: dict[str, int] = {}
        for part in (parts_text or "").split(", "):
            if not part:
                continue
            m = _PART.match(part.strip())
            if m is None:
                raise ValueError(f"unexpected process summary part {part!r} in {matches[-1][0]!r}")
            counts[m[2]] = counts.get(m[2], 0) + int(m[1])
        hits = counts.pop(REMOTE_CACHE_HIT, 0)
        return cls(total=int(total_text), remote_cache_hit=hits, strategies=counts)


@dataclass(frozen=True)
class BuildResult:
    args: Sequence[str]
    returncode: int
    stdout: str
    stderr: str
    summary: ProcessSummary | None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class BazelError(AssertionError):
    pass


class Bazel:
    """Drives ``bazel`` on a private copy of a workspace under ``root``.

    Use as a context manager (or call :meth:`shutdown`) so the server goes away with the
    test; ``max_idle_secs`` makes a leaked one exit by itself soon after."""

    def __init__(self, root: Path, *, workspace: Path = WORKSPACE, executable: str = "bazel",
                 max_idle_secs: int = 60, timeout: float = 240) -> None:
        self.root = root
        self.workspace = root / "workspace"
        self.output_user_root = root / "output"
        self.executable = executable
        self.max_idle_secs = max_idle_secs
        self.timeout = timeout
        root.mkdir(parents=True, exist_ok=True)
        if not self.workspace.exists():
            shutil.copytree(workspace, self.workspace, symlinks=True)
        self.output_user_root.mkdir(exist_ok=True)

    @staticmethod
    def available(executable: str = "bazel") -> bool:
        return shutil.which(executable) is not None

    @property
    def startup_options(self) -> list[str]:
        return [
            f"--output_user_root={self.output_user_root}",
            f"--max_idle_secs={self.max_idle_secs}",
            # A developer's ~/.bazelrc must not leak in (a disk cache, a remote, ...). The
            # system rc stays: Debian's points the client at its install base.
            "--nohome_rc",
        ]

    @property
    def env(self) -> dict[str, str]:
        # CC/CXX and BAZEL_* steer the C++ toolchain autoconfiguration; TEST_TMPDIR moves
        # the output root. Dropping them keeps action keys the same for every caller.
        drop = ("CC", "CXX", "TEST_TMPDIR")
        return {k: v for k, v in os.environ.items()
                if k not in drop and not k.startswith(("BAZEL", "FLYWHEEL_"))}

    def run(self, command: str, *args: str, check: bool = True,
            timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [self.executable, *self.startup_options, command, *args]
        proc = subprocess.run(cmd, cwd=self.workspace, capture_output=True, text=True,
                              env=self.env, timeout=timeout or self.timeout)
        if check and proc.returncode != 0:
            raise BazelError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
        return proc

    def build(self, *flags: str, targets: Sequence[str] = ("//...",), check: bool = True,
              timeout: float | None = None) -> BuildResult:
        """``bazel build`` with BUILD_FLAGS, then ``flags`` (later flags win, so a
        ``--remote_cache=...`` here overrides the empty default), then ``targets``."""
        args = [*BUILD_FLAGS, *flags, "--", *targets]
        proc = self.run("build", *args, check=check, timeout=timeout)
        return BuildResult(args=args, returncode=proc.returncode, stdout=proc.stdout,
                           stderr=proc.stderr, summary=ProcessSummary.parse(proc.stderr))

    def clean(self, *, expunge: bool = False) -> None:
        self.run("clean", *(["--expunge"] if expunge else []))

    def shutdown(self) -> None:
        if self.output_user_root.exists():
            self.run("shutdown", check=False, timeout=60)

    @staticmethod
    def remote_flags(cache: str, *, token: str | None = None, instance_name: str | None = None,
                     upload: bool | None = None, extra: Sequence[str] = ()) -> list[str]:
        """Flags for a remote cache at ``cache`` (``http://...`` or ``grpc://...``)."""
        flags = [f"--remote_cache={cache}"]
        if token is not None:
            flags.append(f"--remote_header=Authorization=Bearer {token}")
        if instance_name is not None:
            flags.append(f"--remote_instance_name={instance_name}")
        if upload is not None:
            flags.append(f"--remote_upload_local_results={'true' if upload else 'false'}")
        flags.extend(extra)
        return flags

    @property
    def bazel_bin(self) -> Path:
        return self.workspace / "bazel-bin"

    def output(self, relative: str) -> Path:
        return self.bazel_bin / relative

    def __enter__(self) -> Bazel:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()

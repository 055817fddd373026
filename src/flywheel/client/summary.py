"""What a push did, and the one line that says so."""

from __future__ import annotations

from dataclasses import dataclass, field

MIB = 1024 * 1024


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


@dataclass
class PushSummary:
    pushed: int = 0
    pushed_bytes: int = 0          # NAR bytes the server stored anew
    deduplicated: int = 0          # paths whose NAR the server already held
    present: int = 0               # skipped: the cache already listed them
    upstream: int = 0              # skipped: signed by an upstream cache's key
    failed: dict[str, str] = field(default_factory=dict)   # path -> why
    sent_bytes: int = 0            # NAR bytes streamed, deduplicated ones included
    seconds: float = 0.0           # wall time spent uploading

    @property
    def skipped(self) -> int:
        return self.present + self.upstream

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def mib_per_second(self) -> float:
        return self.sent_bytes / MIB / self.seconds if self.seconds > 0 else 0.0

    def add(self, other: PushSummary) -> None:
        self.pushed += other.pushed
        self.pushed_bytes += other.pushed_bytes
        self.deduplicated += other.deduplicated
        self.present += other.present
        self.upstream += other.upstream
        self.failed.update(other.failed)
        self.sent_bytes += other.sent_bytes
        self.seconds += other.seconds

    def line(self) -> str:
        return (f"pushed {self.pushed} ({human_bytes(self.pushed_bytes)}), "
                f"deduplicated {self.deduplicated}, "
                f"skipped {self.skipped} ({self.present} already present, "
                f"{self.upstream} upstream), "
                f"failed {len(self.failed)}, {self.mib_per_second:.1f} MiB/s")

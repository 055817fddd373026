"""narinfo latency while a large upload streams into the same single worker.

An upload is hashed, decompressed and written on the blocking pool, so the event loop that
answers narinfo lookups must stay responsive: the target is a p99 under 10 ms with one
HTTP worker while a 1 GiB NAR arrives."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import clients, push_memory
from bench.nixconf import isolated_nix_env
from bench.servers import EMBEDDED, Backend, Flywheel

TARGET_P99_MS = 10.0
Log = Callable[[str], None]


@dataclass
class LatencyRow:
    key: str
    label: str
    idle: list[dict[str, Any]] = field(default_factory=list)
    loaded: list[dict[str, Any]] = field(default_factory=list)
    target_p99_ms: float = TARGET_P99_MS
    note: str = ""

    @staticmethod
    def median_ms(runs: list[dict[str, Any]], key: str) -> float | None:
        return statistics.median(r[key] / 1000 for r in runs) if runs else None

    @property
    def met(self) -> bool | None:
        p99 = self.median_ms(self.loaded, "p99_us")
        return None if p99 is None else p99 <= self.target_p99_ms

    def describe(self, runs: list[dict[str, Any]]) -> str:
        p50, p99 = self.median_ms(runs, "p50_us"), self.median_ms(runs, "p99_us")
        if p50 is None or p99 is None:
            return "—"
        rate = statistics.median(r["requests_per_s"] for r in runs)
        return f"p50 {p50:.2f} ms, p99 {p99:.2f} ms ({rate / 1000:.1f}k req/s)"

    def cells(self) -> tuple[str, str, str]:
        """The report's GloriousFlywheel, reference and target columns."""
        return (self.describe(self.loaded), f"idle: {self.describe(self.idle)}",
                f"p99 ≤ {self.target_p99_ms:g} ms")

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "target_p99_ms": self.target_p99_ms,
                "met": self.met, "idle": self.idle, "loaded": self.loaded, "note": self.note,
                "idle_p99_ms": self.median_ms(self.idle, "p99_us"),
                "loaded_p50_ms": self.median_ms(self.loaded, "p50_us"),
                "loaded_p99_ms": self.median_ms(self.loaded, "p99_us")}


def _upload(fw: Flywheel, big: push_memory.BigPath) -> subprocess.Popen[str]:
    """``nix-store --dump`` of the big path PUT as an uncompressed NAR (its file hash is its
    NarHash), streamed: the server verifies it as it arrives."""
    url = f"{fw.cache_url}/nar/{big.nar_hash.removeprefix('sha256:')}.nar"
    return subprocess.Popen(
        f"nix-store --dump {big.path} | curl -sS -o /dev/null -w '%{{http_code}}' -T - "
        f"-H 'Authorization: Bearer {fw.token}' -H 'Content-Type: application/x-nix-nar' "
        f"'{url}'", shell=True, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=isolated_nix_env())


def run(fw_data: Path, hashes: list[str], work: Path, results: Path, size: int, seed: int,
        runs: int, duration: float, log: Log, backend: Backend = EMBEDDED) -> LatencyRow:
    big = push_memory.build_path(size, seed, results, log)
    row = LatencyRow("narinfo_latency_upload",
                     f"narinfo latency, 1 worker, during a {big.nar_size >> 20} MiB upload")
    script = work / "cycle.lua"
    script.write_text(clients.WRK_SCRIPT)
    paths = work / "narinfo-latency.txt"
    paths.write_text("".join(f"/main/{h}.narinfo\n" for h in hashes))
    fw = Flywheel(fw_data, workers=1, backend=backend).start()
    overlapped = 0
    try:
        for r in range(runs):
            idle = clients.wrk(fw.url, paths, 1, 1, duration, script)
            row.idle.append(idle.detail)
            upload = _upload(fw, big)
            time.sleep(0.3)  # the upload is under way before the first lookup is timed
            loaded = clients.wrk(fw.url, paths, 1, 1, duration, script)
            still_running = upload.poll() is None
            out, err = upload.communicate(timeout=3600)
            if out.strip() != "200":
                raise RuntimeError(f"latency upload answered {out.strip()!r}: {err[-2000:]}")
            overlapped += still_running
            row.loaded.append({**loaded.detail, "upload_outlasted_measurement": still_running})
            log(f"{row.label} [{r + 1}/{runs}]: idle {row.describe([idle.detail])}; "
                f"during upload {row.describe([loaded.detail])}")
    finally:
        fw.stop()
    row.note = (f"wrk -t1 -c1 -d{duration:g}s cycling {len(hashes)} narinfos against "
                f"`flywheel serve --workers 1`, idle and while `nix-store --dump | curl -T -` "
                f"PUTs the NAR ({overlapped} of {runs} uploads outlasted the measurement)")
    return row

"""Results: per-workload series of interleaved runs, ratios, targets, the table and JSON."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from bench.clients import Timed

if TYPE_CHECKING:
    from bench.latency import LatencyRow
    from bench.push_memory import PushMemory, PushRun


@dataclass
class Row:
    """One workload: a run of A (ours) and of B (the reference) per interleaved round."""

    key: str
    label: str
    a_name: str
    b_name: str
    target: float | None
    unit: str = "s"  # how to print absolutes: "s", "narinfo", "nar"
    a: list[Timed] = field(default_factory=list)
    b: list[Timed] = field(default_factory=list)
    note: str = ""

    @property
    def ratios(self) -> list[float]:
        return [x.seconds / y.seconds for x, y in zip(self.a, self.b, strict=False)]

    @property
    def median_ratio(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None

    @property
    def met(self) -> bool | None:
        if self.target is None or self.median_ratio is None:
            return None
        return self.median_ratio <= self.target

    @staticmethod
    def _median(xs: list[Timed]) -> float | None:
        return statistics.median(x.seconds for x in xs) if xs else None

    def absolute(self, xs: list[Timed]) -> str:
        m = self._median(xs)
        if m is None:
            return "—"
        if self.unit == "narinfo":
            rate = statistics.median(float(x.detail["requests_per_s"]) for x in xs)  # type: ignore[arg-type]
            return f"{m * 1000:.1f} ms ({rate / 1000:.1f}k req/s)"
        if self.unit == "nar":
            rate = statistics.median(float(x.detail["bytes_per_s"]) for x in xs)  # type: ignore[arg-type]
            return f"{m:.2f} s ({rate / 2**20:.0f} MiB/s)"
        return f"{m:.2f} s"

    def spread(self) -> str:
        r = self.ratios
        if not r:
            return "—"
        if len(r) < 4:
            return f"{min(r):.2f}–{max(r):.2f}"
        q = statistics.quantiles(r, n=4)
        return f"{min(r):.2f}–{max(r):.2f} (IQR {q[0]:.2f}–{q[2]:.2f})"

    def as_dict(self) -> dict[str, Any]:
        r = self.ratios
        return {
            "key": self.key, "label": self.label, "a": self.a_name, "b": self.b_name,
            "target_ratio": self.target, "met": self.met,
            "ratio_median": self.median_ratio, "ratio_min": min(r) if r else None,
            "ratio_max": max(r) if r else None,
            "ratio_iqr": statistics.quantiles(r, n=4)[::2] if len(r) >= 2 else None,
            "ratios": r,
            "a_median_s": self._median(self.a), "b_median_s": self._median(self.b),
            "a_runs": [{"seconds": x.seconds, **x.detail} for x in self.a],
            "b_runs": [{"seconds": x.seconds, **x.detail} for x in self.b],
            "note": self.note,
        }


@dataclass
class MemoryRow:
    key: str
    label: str
    flywheel: list[dict[str, float]] = field(default_factory=list)
    nginx: list[dict[str, float]] = field(default_factory=list)
    target_mib: float | None = 250

    @staticmethod
    def peak(xs: list[dict[str, float]], field_name: str = "hwm_sum_mib") -> float | None:
        return max((x[field_name] for x in xs), default=None)

    def describe(self, xs: list[dict[str, float]]) -> str:
        hwm = self.peak(xs)
        if hwm is None:
            return "—"
        return (f"{hwm:.0f} MiB (workers {self.peak(xs, 'workers_hwm_sum_mib'):.0f}, "
                f"PSS {self.peak(xs, 'sampled_pss_mib'):.0f})")

    @property
    def met(self) -> bool | None:
        p = self.peak(self.flywheel)
        return None if p is None or self.target_mib is None else p <= self.target_mib

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "target_mib": self.target_mib,
                "met": self.met,
                "flywheel_peak_hwm_sum_mib": self.peak(self.flywheel),
                "flywheel_peak_workers_hwm_sum_mib": self.peak(self.flywheel,
                                                               "workers_hwm_sum_mib"),
                "flywheel_peak_sampled_rss_mib": self.peak(self.flywheel, "sampled_rss_mib"),
                "flywheel_peak_sampled_pss_mib": self.peak(self.flywheel, "sampled_pss_mib"),
                "nginx_peak_hwm_sum_mib": self.peak(self.nginx),
                "nginx_peak_sampled_pss_mib": self.peak(self.nginx, "sampled_pss_mib"),
                "flywheel_runs": self.flywheel, "nginx_runs": self.nginx}


def _status(met: bool | None) -> str:
    return {True: "[green]met[/]", False: "[red]missed[/]", None: "—"}[met]


def table(rows: list[Row], memory: list[MemoryRow], title: str,
          latency: Sequence[LatencyRow] = ()) -> Table:
    t = Table(title=title, title_justify="left")
    for col, justify in (("workload", "left"), ("GloriousFlywheel", "right"),
                         ("reference", "right"), ("ratio (median)", "right"),
                         ("spread (min–max)", "right"), ("target", "right"),
                         ("", "left")):
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        m = r.median_ratio
        t.add_row(r.label, r.absolute(r.a), f"{r.b_name}: {r.absolute(r.b)}",
                  f"{m:.2f}×" if m is not None else "—", r.spread(),
                  f"≤ {r.target:g}×" if r.target is not None else "—", _status(r.met))
    for mem in memory:
        t.add_row(mem.label, mem.describe(mem.flywheel),
                  f"nginx: {mem.describe(mem.nginx)}", "", "",
                  f"≤ {mem.target_mib:g} MiB" if mem.target_mib else "—", _status(mem.met))
    for lat in latency:
        ours, reference, target = lat.cells()
        t.add_row(lat.label, ours, reference, "", "", target, _status(lat.met))
    return t


def markdown(rows: list[Row], memory: list[MemoryRow],
             latency: Sequence[LatencyRow] = ()) -> str:
    out = ["| workload | GloriousFlywheel | reference | ratio (median) | spread | target | |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r.median_ratio
        out.append(f"| {r.label} | {r.absolute(r.a)} | {r.b_name}: {r.absolute(r.b)} | "
                   f"{f'{m:.2f}×' if m is not None else '—'} | {r.spread()} | "
                   f"{f'≤ {r.target:g}×' if r.target is not None else '—'} | "
                   f"{ {True: 'met', False: 'missed', None: ''}[r.met]} |")
    for mem in memory:
        fw, ng = MemoryRow.peak(mem.flywheel), MemoryRow.peak(mem.nginx)
        out.append(f"| {mem.label} | {mem.describe(mem.flywheel)} | "
                   f"nginx: {mem.describe(mem.nginx)} | | | ≤ {mem.target_mib:g} MiB | "
                   f"{ {True: 'met', False: 'missed', None: ''}[mem.met]} |"
                   if fw is not None and ng is not None else f"| {mem.label} | — | — | | | | |")
    for lat in latency:
        ours, reference, target = lat.cells()
        out.append(f"| {lat.label} | {ours} | {reference} | | | {target} | "
                   f"{ {True: 'met', False: 'missed', None: ''}[lat.met]} |")
    return "\n".join(out)


_PUSH_COLUMNS = ("client", "wall time", "client peak RSS", "server RSS sum", "server PSS sum",
                 "largest server process", "bound")


def _push_cells(r: PushRun, bound: float) -> list[str]:
    s, c = r.server, r.client_memory
    client = "— (not measured)" if c is None else (
        f"{r.client_peak_mib:.0f} MiB (largest process {c['largest_process_maxrss_mib']:.0f})")
    return [r.client, f"{r.seconds:.1f} s ({r.mib_per_s:.0f} MiB/s)", client,
            f"{s['rss_sum_peak_mib']:.0f} MiB ({s['rss_sum_before_mib']:.0f} before)",
            f"{s['pss_sum_peak_mib']:.0f} MiB",
            f"{s['largest_process_hwm_mib']:.0f} MiB ({s['largest_process_role']}, "
            f"+{s['largest_process_growth_mib']:.0f})",
            f"< {bound:g} MiB"]


def push_table(pm: PushMemory) -> Table:
    t = Table(title=f"{pm.label}: {pm.path.nar_size / 2**20:.0f} MiB NAR of random bytes into "
              "a fresh flywheel serve; peak RSS (client tree and largest server process "
              "held against the bound)", title_justify="left")
    for col in (*_PUSH_COLUMNS, ""):
        t.add_column(col, justify="left" if col in ("client", "") else "right")
    for r in pm.runs:
        t.add_row(*_push_cells(r, pm.bound_mib),
                  "[red]FAILED[/]" if r.violations(pm.bound_mib) else "[green]met[/]")
    return t


def push_markdown(pm: PushMemory) -> str:
    out = [f"{pm.label} ({pm.path.nar_size / 2**20:.0f} MiB NAR):", "",
           f"| {' | '.join(_PUSH_COLUMNS)} | |", "|" + "---|" * (len(_PUSH_COLUMNS) + 1)]
    for r in pm.runs:
        status = "FAILED" if r.violations(pm.bound_mib) else "met"
        out.append(f"| {' | '.join(_push_cells(r, pm.bound_mib))} | {status} |")
    return "\n".join(out)


def first_line(*args: str) -> str:
    """A program's first line of output (its version, say); ``?`` when it does not run."""
    try:
        p = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
        return (p.stdout or p.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def machine() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kib = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                           if ln.startswith("MemTotal:")))
    except (OSError, StopIteration):
        mem_kib = 0
    repo = Path(__file__).resolve().parent.parent
    return {
        "nproc": os.cpu_count(), "cpu_model": model, "ram_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(), "python": platform.python_version(),
        "git_revision": first_line("git", "-C", str(repo), "rev-parse", "--short", "HEAD"),
        "git_dirty": bool(subprocess.run(["git", "-C", str(repo), "status", "--porcelain",
                                          "src"], capture_output=True, text=True).stdout.strip()),
        "nix": first_line("nix", "--version"), "nginx": first_line("nginx", "-v"),
        "wrk": first_line("wrk", "--version"), "curl": first_line("curl", "--version"),
        "bazel": "bazel-bootstrap " + first_line("dpkg-query", "-W", "-f=${Version}",
                                                 "bazel-bootstrap"),
    }


def print_machine(console: Console, m: dict[str, Any]) -> None:
    console.print(f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['ram_gib']} GiB RAM, "
                  f"Linux {m['kernel']}; {m['nix']}; {m['nginx']}; {m['bazel']}")

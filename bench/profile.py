"""py-spy profiles of flywheel's HTTP workers under the narinfo and NAR workloads.

Not timed: py-spy pauses the workers to sample them. For each workload it records every
worker for the same interval while the load runs, then merges the collapsed stacks and
prints the functions with the most samples on top of the stack (self) and anywhere on it
(inclusive). Raw stacks go to bench/results/profile/*.txt (flamegraph.pl input).
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import clients


def _py_spy() -> str:
    exe = Path(sys.executable).with_name("py-spy")
    if exe.exists():
        return str(exe)
    found = shutil.which("py-spy")
    if found:
        return found
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    return str(exe)


def _record(pids: list[int], seconds: float, out: Path, load: Callable[[], None]
            ) -> Path:
    spy = _py_spy()
    procs = [subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
                               "--rate", "200", "--native", "--format", "raw", "--output",
                               str(out.with_suffix(f".{pid}.txt"))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for pid in pids]
    time.sleep(1.0)  # attach before the load starts
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        load()
    for p in procs:
        p.wait(timeout=seconds + 60)
    merged: collections.Counter[str] = collections.Counter()
    for pid in pids:
        f = out.with_suffix(f".{pid}.txt")
        if f.exists():
            for line in f.read_text().splitlines():
                stack, _, n = line.rpartition(" ")
                if n.isdigit():
                    merged[stack] += int(n)
            f.unlink()
    out.write_text("".join(f"{s} {n}\n" for s, n in merged.most_common()))
    return out


def _frame(f: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; drop the line number.
    name, _, where = f.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "src/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"


def _is_python(frame: str) -> bool:
    return ".py:" in frame or ".py)" in frame


def summarize(collapsed: Path, top: int = 12) -> dict[str, Any]:
    """Shares of the busy samples of the Python thread (the event loop that runs the app;
    samples waiting in epoll are left out):
    ``self`` by leaf frame (native frames included: libc, uvloop,
    Granian's Rust), ``python_self`` by the innermost Python frame (native time charged to
    the Python function that called into it), ``inclusive`` by any frame on the stack."""
    leaf: collections.Counter[str] = collections.Counter()
    py_self: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = native_only = idle = 0
    for line in collapsed.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        count = int(n)
        raw = [f for f in stack.split(";") if f]
        py = [f for f in raw if _is_python(f)]
        if not py:
            # Granian's Rust runtime threads (mostly parked in futex/epoll): not the app.
            native_only += count
            continue
        if raw[-1].startswith(("epoll_wait ", "epoll_pwait ")):
            idle += count  # the event loop waiting for Granian to hand it work
            continue
        total += count
        leaf[_frame(raw[-1])] += count
        py_self[_frame(py[-1])] += count
        for f in {_frame(f) for f in raw}:
            incl[f] += count

    def share(c: collections.Counter[str], k: int) -> list[tuple[str, float]]:
        return [(f, round(100 * n / max(total, 1), 1)) for f, n in c.most_common(k)]

    return {"samples": total, "native_thread_samples": native_only, "idle_samples": idle,
            "self": share(leaf, top), "python_self": share(py_self, top),
            "inclusive": share(incl, top * 3)}


def run(bench: Any, out_dir: Path, log: Callable[[str], None]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    fw = bench.fw
    pids = fw.worker_pids()
    seconds = max(10.0, bench.args.duration * 2)
    script = bench.work / "cycle.lua"
    script.write_text(clients.WRK_SCRIPT)
    paths = bench.work / "narinfo-flywheel.txt"
    paths.write_text("".join(f"/main/{h}.narinfo\n" for h in bench.closure.hashes))
    urls, _ = clients.nar_urls(fw.cache_url, bench.closure.hashes)
    loads: dict[str, Callable[[], None]] = {
        "narinfo-16": lambda: (clients.wrk(fw.url, paths, 16, 2, seconds, script), None)[1],
        "narinfo-1": lambda: (clients.wrk(fw.url, paths, 1, 1, seconds, script), None)[1],
        "nar-16": lambda: (clients.curl_fetch(urls, 16, bench.work / "curl-prof.cfg"), None)[1],
    }
    summaries = {}
    for name, load in loads.items():
        log(f"py-spy: recording workers {pids} for {seconds:.0f} s under {name} ...")
        f = _record(pids, seconds, out_dir / f"{name}.txt", load)
        s = summarize(f)
        summaries[name] = s
        lines = [f"  {p:5.1f}%  {fn}" for fn, p in s["python_self"][:10]]
        native = [f"  {p:5.1f}%  {fn}" for fn, p in s["self"][:8]]
        log(f"py-spy {name}: {s['samples']} busy samples of the event-loop thread "
            f"({s['idle_samples']} idle left out); by innermost Python frame:\n"
            + "\n".join(lines) + "\nby leaf frame (native included):\n" + "\n".join(native))
    bench.info["profile"] = summaries

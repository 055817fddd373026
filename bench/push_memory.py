"""Pushing one big store path keeps client and server memory bounded (issue 4).

One store path holding a single file of incompressible bytes (1 GiB; 128 MiB with --small),
built by the real nix with bench/gen_path.py and cached like the closure. Each client
pushes it into a fresh ``flywheel serve``:

* ``flywheel push main PATH`` (the real CLI as a subprocess, after ``flywheel login``, with
  its own XDG_CONFIG_HOME): client and server memory;
* ``nix copy --to URL?compression=zstd PATH``: server memory only (Nix's own memory is
  Nix's business).

Memory is sampled every 50 ms from /proc: for each process tree (client, server) the sum of
VmRSS and of Pss, and the largest single VmRSS. Exact peaks come on top: the server's
VmHWM per process (peaks reset with /proc/PID/clear_refs before the push) and, for the
client, ``wait4``'s ru_maxrss (the largest of the client and the children it waited for).

Bounds, generous on purpose (the point is that nobody holds the NAR in memory): the client
tree and the largest server process must each stay below 256 MiB. A violation is reported,
not raised, so the table still prints; bench/run.py then exits non-zero. The pushed path
must also substitute back: narinfo 200 with the right StorePath, NarSize and NarHash, and a
NAR download whose size is the narinfo's FileSize and whose decompressed bytes hash to NarHash.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import closure
from bench.closure import MiB
from bench.nixconf import isolated_nix_env
from bench.servers import (
    FLYWHEEL,
    Flywheel,
    _children,
    _cmdline,
    _pss_kib,
    _status_kib,
    worker_pids,
)

BOUND_MIB = 256
SAMPLE_SECONDS = 0.05

Log = Callable[[str], None]


# ---- the big path -------------------------------------------------------------------------


@dataclass(frozen=True)
class BigPath:
    key: str
    path: str
    file_bytes: int
    nar_size: int
    nar_hash: str  # sha256:<base32>, as narinfos spell it
    build_seconds: float


def _describe(key: str, path: str, file_bytes: int, seconds: float) -> BigPath:
    env = isolated_nix_env()

    def q(flag: str) -> str:
        return subprocess.run(["nix-store", "-q", flag, path], capture_output=True, text=True,
                              check=True, env=env).stdout.strip()

    return BigPath(key, path, file_bytes, int(q("--size")), q("--hash"), seconds)


def build_path(size: int, seed: int, results: Path, log: Log) -> BigPath:
    """One store path with a single ``size``-byte file of random bytes (gen_path.py kind
    ``r``), from bench/results/closure.txt if still valid, else built by nix-build."""
    spec = closure.ClosureSpec(paths=1, total=size, seed=seed)
    key = "push-" + spec.key.split("-", 1)[1]  # push-1024MiB-s1-v1-<gen_path.py hash>
    name = f"bench-push-{size // MiB}MiB"
    gcroot = results / key
    env = isolated_nix_env()
    path = closure._recorded(results, key)
    if path and gcroot.exists() and subprocess.run(
            ["nix-store", "--check-validity", path], env=env, capture_output=True
    ).returncode == 0:
        big = _describe(key, path, size, 0.0)
        log(f"push path {key}: cached, {path} ({big.nar_size / MiB:.0f} MiB NAR)")
        return big
    results.mkdir(parents=True, exist_ok=True)
    expr = results / f"{key}.nix"
    expr.write_text(closure.nix_expression(spec, [closure.PlannedPath(name, [("r", size)])]))
    log(f"push path {key}: building one {size / MiB:.0f} MiB file of random bytes with nix ...")
    t0 = time.monotonic()
    proc = subprocess.run(["nix-build", str(expr), "--out-link", str(gcroot), "--quiet"],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"nix-build {expr} failed:\n{proc.stderr[-4000:]}")
    path = proc.stdout.strip().splitlines()[-1]
    closure._record(results, key, path)
    big = _describe(key, path, size, time.monotonic() - t0)
    log(f"push path {key}: built in {big.build_seconds:.0f} s: {path}")
    return big


# ---- memory sampling ----------------------------------------------------------------------


def _tree(children: dict[int, list[int]], root: int) -> list[int]:
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


@dataclass
class TreePeaks:
    rss_sum_kib: int = 0
    pss_sum_kib: int = 0
    largest_rss_kib: int = 0
    pids: set[int] = field(default_factory=set)


class Sampler:
    """Every 50 ms, per named process tree: the largest sum of VmRSS, of Pss, and the
    largest single VmRSS seen. Trees can be added while it runs (the client starts after
    the server is being watched)."""

    def __init__(self) -> None:
        self.roots: dict[str, int] = {}
        self.peaks: dict[str, TreePeaks] = {}
        self.samples = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, name: str, root: int) -> None:
        with self._lock:
            self.roots[name] = root
            self.peaks.setdefault(name, TreePeaks())

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        children = _children()
        with self._lock:
            roots = dict(self.roots)
        for name, root in roots.items():
            pids = _tree(children, root)
            rss = [_status_kib(p, "VmRSS") for p in pids]
            p = self.peaks[name]
            p.pids.update(pids)
            p.rss_sum_kib = max(p.rss_sum_kib, sum(rss))
            p.largest_rss_kib = max(p.largest_rss_kib, *rss)
            p.pss_sum_kib = max(p.pss_sum_kib, sum(_pss_kib(x) for x in pids))
        self.samples += 1

    def _run(self) -> None:
        self.sample()
        while not self._stop.wait(SAMPLE_SECONDS):
            self.sample()


def reset_peaks(root: int) -> dict[int, int]:
    """VmHWM := current VmRSS for every process in the tree; returns that VmRSS (KiB)."""
    before = {}
    for pid in _tree(_children(), root):
        before[pid] = _status_kib(pid, "VmRSS")
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
    return before


def _role(pid: int, root: int, workers: set[int]) -> str:
    if pid == root:
        return "main"
    if pid in workers:
        return "worker"
    args = _cmdline(pid).split(b"\0")
    name = args[args.index(b"-m") + 1] if b"-m" in args[:-1] else args[0]
    return name.decode(errors="replace").rsplit("/", 1)[-1].rsplit(".", 1)[-1] or "other"


def server_memory(root: int, peaks: TreePeaks, before: dict[int, int]) -> dict[str, Any]:
    pids = _tree(_children(), root)
    workers = set(worker_pids(root))
    hwm = {p: _status_kib(p, "VmHWM") for p in pids}
    largest = max(pids, key=lambda p: hwm[p])
    role = _role(largest, root, workers)
    return {
        "rss_sum_before_mib": sum(before.values()) / 1024,
        "rss_sum_peak_mib": peaks.rss_sum_kib / 1024,
        "pss_sum_peak_mib": peaks.pss_sum_kib / 1024,
        "largest_process_sampled_rss_mib": peaks.largest_rss_kib / 1024,
        "hwm_sum_mib": sum(hwm.values()) / 1024,
        "main_hwm_mib": hwm[root] / 1024,
        "largest_worker_hwm_mib": max((hwm[p] for p in workers), default=0) / 1024,
        "largest_process_hwm_mib": hwm[largest] / 1024,
        "largest_process_role": role,
        "largest_process_growth_mib": (hwm[largest] - before.get(largest, 0)) / 1024,
        "processes": len(pids), "workers": len(workers),
        "per_process": [{"role": _role(p, root, workers), "hwm_mib": hwm[p] / 1024,
                         "rss_before_mib": before.get(p, 0) / 1024} for p in pids],
    }


# ---- substitution back --------------------------------------------------------------------


def verify(cache_url: str, big: BigPath) -> dict[str, Any]:
    """The narinfo and the NAR a substituter would fetch; ``problems`` lists what is wrong.
    The NAR is streamed (1 MiB reads), decompressed and hashed, never held whole."""
    from flywheel.codecs import StreamDecoder
    from flywheel.nix.hashes import NixHash

    u = urllib.parse.urlsplit(cache_url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=120)
    prefix = u.path.rstrip("/")
    problems: list[str] = []
    out: dict[str, Any] = {"problems": problems}
    try:
        conn.request("GET", f"{prefix}/{Path(big.path).name[:32]}.narinfo")
        r = conn.getresponse()
        body = r.read().decode(errors="replace")
        out["narinfo_status"] = r.status
        if r.status != 200:
            problems.append(f"narinfo answers HTTP {r.status}")
            return out
        fields = dict(line.split(": ", 1) for line in body.splitlines() if ": " in line)
        out["narinfo"] = fields
        if fields.get("StorePath") != big.path:
            problems.append(f"narinfo StorePath {fields.get('StorePath')} != {big.path}")
        if fields.get("NarSize") != str(big.nar_size):
            problems.append(f"narinfo NarSize {fields.get('NarSize')} != {big.nar_size}")
        nar_hash = fields.get("NarHash")
        if not nar_hash or NixHash.parse(nar_hash) != NixHash.parse(big.nar_hash):
            problems.append(f"narinfo NarHash {fields.get('NarHash')} != {big.nar_hash}")
        if "FileSize" not in fields or "URL" not in fields:
            problems.append("narinfo has no FileSize or no URL")
            return out
        compression = fields.get("Compression", "none")
        nar_sha, nar_bytes = hashlib.sha256(), 0

        def sink(data: bytes) -> None:
            nonlocal nar_bytes
            nar_sha.update(data)
            nar_bytes += len(data)

        decoder = StreamDecoder(compression, sink)
        conn.request("GET", f"{prefix}/{fields['URL']}")
        r = conn.getresponse()
        out["nar_status"] = r.status
        downloaded = 0
        while chunk := r.read(1 << 20):
            downloaded += len(chunk)
            decoder.feed(chunk)
        decoder.finish()
        out.update(nar_file_bytes=downloaded, nar_bytes=nar_bytes, compression=compression)
        if r.status != 200:
            problems.append(f"NAR {fields['URL']} answers HTTP {r.status}")
        if downloaded != int(fields["FileSize"]):
            problems.append(f"NAR file is {downloaded} bytes, narinfo FileSize "
                            f"{fields['FileSize']}")
        if nar_bytes != big.nar_size:
            problems.append(f"NAR decompresses to {nar_bytes} bytes, not {big.nar_size}")
        if NixHash("sha256", nar_sha.digest()) != NixHash.parse(big.nar_hash):
            problems.append("NAR does not hash to the path's NarHash")
    except (OSError, http.client.HTTPException, ValueError) as e:
        problems.append(f"{type(e).__name__}: {e}")
    finally:
        conn.close()
    return out


# ---- the runs -----------------------------------------------------------------------------


@dataclass
class PushRun:
    client: str
    seconds: float
    nar_bytes: int
    server: dict[str, Any]
    client_memory: dict[str, Any] | None
    verified: dict[str, Any]
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def mib_per_s(self) -> float:
        return self.nar_bytes / MiB / self.seconds

    @property
    def client_peak_mib(self) -> float | None:
        c = self.client_memory
        return None if c is None else max(c["rss_sum_peak_mib"], c["largest_process_maxrss_mib"])

    def violations(self, bound: float) -> list[str]:
        out = []
        peak = self.client_peak_mib
        if peak is not None and peak >= bound:
            out.append(f"{self.client}: client peak RSS {peak:.0f} MiB ≥ {bound:g} MiB")
        s, role = self.server["largest_process_hwm_mib"], self.server["largest_process_role"]
        if s >= bound:
            out.append(f"{self.client}: largest server process ({role}) peak RSS {s:.0f} MiB "
                       f"≥ {bound:g} MiB")
        out += [f"{self.client}: pushed path does not substitute back: {p}"
                for p in self.verified["problems"]]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"client": self.client, "seconds": self.seconds, "nar_bytes": self.nar_bytes,
                "mib_per_s": self.mib_per_s, "client_peak_mib": self.client_peak_mib,
                "client_memory": self.client_memory, "server": self.server,
                "verified": self.verified, **self.detail}


@dataclass
class PushMemory:
    path: BigPath
    bound_mib: float = BOUND_MIB
    runs: list[PushRun] = field(default_factory=list)

    label = "push one big path"

    @property
    def failures(self) -> list[str]:
        return [v for r in self.runs for v in r.violations(self.bound_mib)]

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path.__dict__, "bound_mib": self.bound_mib,
                "met": not self.failures, "failures": self.failures,
                "runs": [r.as_dict() for r in self.runs]}


SUMMARY = re.compile(r"pushed (\d+) \(.*?failed (\d+).*?([\d.]+) MiB/s")


def _flywheel_push(fw: Flywheel, big: BigPath, work: Path) -> PushRun:
    home = work / "push-memory-client"
    shutil.rmtree(home, ignore_errors=True)
    env = isolated_nix_env(home, XDG_CONFIG_HOME=str(home / "config"), COLUMNS="200")
    login = subprocess.run([FLYWHEEL, "login", "bench", fw.url, "-"], input=fw.token + "\n",
                           capture_output=True, text=True, env=env, timeout=60)
    if login.returncode != 0:
        raise RuntimeError(f"flywheel login failed:\n{login.stdout}\n{login.stderr}")
    out_path, err_path = home / "push.out", home / "push.err"
    with Sampler() as sampler, out_path.open("wb") as out, err_path.open("wb") as err:
        before = reset_peaks(fw.pid)
        sampler.watch("server", fw.pid)
        t0 = time.perf_counter()
        proc = subprocess.Popen([FLYWHEEL, "push", "main", big.path], stdout=out, stderr=err,
                                env=env)
        sampler.watch("client", proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    stdout = out_path.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"flywheel push failed ({proc.returncode}):\n{stdout}\n"
                           f"{err_path.read_text(errors='replace')[-4000:]}")
    server = server_memory(fw.pid, sampler.peaks["server"], before)
    c = sampler.peaks["client"]
    client = {"rss_sum_peak_mib": c.rss_sum_kib / 1024, "pss_sum_peak_mib": c.pss_sum_kib / 1024,
              "largest_process_sampled_rss_mib": c.largest_rss_kib / 1024,
              "largest_process_maxrss_mib": usage.ru_maxrss / 1024,  # KiB on Linux
              "processes_seen": len(c.pids)}
    m = SUMMARY.search(stdout)
    detail = {"samples": sampler.samples, "summary": m.group(0) if m else stdout.strip()[-300:]}
    if m and (m.group(1) != "1" or m.group(2) != "0"):
        raise RuntimeError(f"flywheel push did not push exactly one path: {m.group(0)}")
    return PushRun("flywheel push", seconds, big.nar_size, server, client,
                   verify(fw.cache_url, big), detail)


def _nix_copy(fw: Flywheel, big: BigPath, work: Path) -> PushRun:
    home = work / "push-memory-nix"
    shutil.rmtree(home, ignore_errors=True)
    netrc = fw.netrc(work / "push-memory.netrc")
    cmd = ["nix", "copy", "--netrc-file", str(netrc), "--to",
           f"{fw.cache_url}?compression=zstd", big.path]
    with Sampler() as sampler:
        before = reset_peaks(fw.pid)
        sampler.watch("server", fw.pid)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=isolated_nix_env(home),
                              timeout=7200)
        seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    server = server_memory(fw.pid, sampler.peaks["server"], before)
    return PushRun("nix copy --to", seconds, big.nar_size, server, None,
                   verify(fw.cache_url, big), {"samples": sampler.samples})


def run(results: Path, work: Path, size: int, seed: int, log: Log) -> PushMemory:
    big = build_path(size, seed, results, log)
    pm = PushMemory(big)
    pushes: list[tuple[str, Callable[[Flywheel, BigPath, Path], PushRun]]] = [
        ("flywheel push", _flywheel_push), ("nix copy --to", _nix_copy)]
    for name, push in pushes:
        fw = Flywheel(work / "push-memory-flywheel").start()
        try:
            log(f"push-memory: {name} {big.nar_size / MiB:.0f} MiB into a fresh flywheel "
                f"serve --workers {fw.workers} ...")
            r = push(fw, big, work)
        finally:
            fw.stop()
            shutil.rmtree(fw.data_dir, ignore_errors=True)
        pm.runs.append(r)
        s, c = r.server, r.client_memory
        log(f"push-memory: {name}: {r.seconds:.1f} s ({r.mib_per_s:.0f} MiB/s); "
            + (f"client peak {r.client_peak_mib:.0f} MiB; " if c else "")
            + f"server RSS sum {s['rss_sum_peak_mib']:.0f} MiB, PSS sum "
            f"{s['pss_sum_peak_mib']:.0f} MiB, largest process {s['largest_process_hwm_mib']:.0f}"
            f" MiB ({s['largest_process_role']}, +{s['largest_process_growth_mib']:.0f} during the "
            "push); substitutes back: "
            + ("yes" if not r.verified["problems"] else "; ".join(r.verified["problems"])))
    return pm

"""The clients that drive the servers: wrk, curl, the real nix, and HTTP helpers.

Why these clients:

* narinfo (tiny responses): ``wrk`` with a Lua script that cycles through the closure's
  narinfo URLs on keep-alive connections. It is C on epoll and reaches tens of thousands of
  requests/s against nginx on this machine, so the slower server is measured rather than the
  client; its own CPU use is recorded next to each figure to show it.
* NARs (the closure once, exact byte count): ``curl`` with one config file for all URLs,
  sequential on one keep-alive connection or ``--parallel --parallel-max 16``, bodies to
  /dev/null, so every NAR is fetched exactly once and the wall time is the measurement.
* upload and substitution: the stock ``nix`` client, which is what users run.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import shutil
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from bench.nixconf import isolated_nix_env

WRK_SCRIPT = """
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  paths = {}
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  i = ((id or 0) * 7919) % #paths
end

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, ' ..
    '"read": %d, "write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@dataclass
class Timed:
    seconds: float
    client_cpu: float
    detail: dict[str, object]


def wrk(base_url: str, paths_file: Path, connections: int, threads: int,
        duration: float, script: Path, *, allow_errors: bool = False) -> Timed:
    """Requests/s for cycling through the paths in ``paths_file``; ``seconds`` is the time
    one pass over all of them takes at that rate. Socket errors and non-2xx answers raise,
    unless ``allow_errors``: under a mixed load they are a figure to report."""
    n_paths = sum(1 for line in paths_file.read_text().splitlines() if line)
    cpu0 = _child_cpu()
    proc = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections),
                           "-d", f"{max(1, round(duration))}s", "--timeout", "10s",
                           "-s", str(script), base_url, str(paths_file)],
                          capture_output=True, text=True, timeout=duration + 60)
    cpu = _child_cpu() - cpu0
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    stats = json.loads(line.removeprefix("WRKJSON "))
    errors = sum(stats[k] for k in ("connect", "read", "write", "status", "timeout"))
    if (errors and not allow_errors) or not stats["requests"]:
        raise RuntimeError(f"wrk saw errors against {base_url}: {stats}")
    seconds = stats["duration_us"] / 1e6
    rate = stats["requests"] / seconds
    return Timed(n_paths / rate, cpu / seconds,
                 {"requests_per_s": rate, **stats, "errors": errors,
                  "client_cpu_cores": cpu / seconds})


def curl_fetch(urls: list[str], parallel: int, config: Path) -> Timed:
    """Fetch every URL once (bodies to /dev/null) on ``parallel`` keep-alive connections."""
    config.write_text("".join(f'url = "{u}"\noutput = "/dev/null"\n' for u in urls))
    # --location: a server may answer with a redirect to a presigned bucket URL.
    cmd = ["curl", "--silent", "--show-error", "--location", "--config", str(config),
           "--write-out", "%{http_code} %{size_download}\\n"]
    if parallel > 1:
        cmd[1:1] = ["--parallel", "--parallel-max", str(parallel), "--parallel-immediate"]
    cpu0 = _child_cpu()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - t0
    cpu = _child_cpu() - cpu0
    lines = proc.stdout.split()
    codes, sizes = lines[0::2], lines[1::2]
    bad = [c for c in codes if c != "200"]
    if proc.returncode != 0 or bad or len(codes) != len(urls):
        raise RuntimeError(f"curl failed ({proc.returncode}), {len(bad)} non-200 of "
                           f"{len(codes)}/{len(urls)}: {proc.stderr[-2000:]}")
    total = sum(int(s) for s in sizes)
    return Timed(seconds, cpu / seconds,
                 {"bytes": total, "bytes_per_s": total / seconds,
                  "client_cpu_cores": cpu / seconds})


def nix_copy_to(url: str, top: str, home: Path, netrc: Path | None = None) -> Timed:
    extra = ["--netrc-file", str(netrc)] if netrc else []
    return _nix(["nix", "copy", *extra, "--to", url, top], home)


def nix_copy_from(url: str, top: str, root: Path, public_key: str, home: Path) -> Timed:
    return _nix(["nix", "copy", "--from", url, "--to", str(root),
                 "--option", "trusted-public-keys", public_key, top], home)


def _nix(cmd: list[str], home: Path) -> Timed:
    shutil.rmtree(home, ignore_errors=True)  # a fresh narinfo cache (XDG_CACHE_HOME)
    env = isolated_nix_env(home)
    cpu0 = _child_cpu()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=7200)
    seconds = time.perf_counter() - t0
    cpu = _child_cpu() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return Timed(seconds, cpu / seconds, {"client_cpu_cores": cpu / seconds})


def rmtree_store(root: Path) -> None:
    """Remove a chroot store (its files are read-only, as Nix leaves them)."""
    if not root.exists():
        return
    for dirpath, dirnames, _ in os.walk(root):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, 0o755)
    shutil.rmtree(root)


class KeepAlive:
    """Small HTTP/1.1 keep-alive client for set-up steps (not timed)."""

    def __init__(self, base_url: str) -> None:
        u = urllib.parse.urlsplit(base_url)
        self.prefix = u.path.rstrip("/")
        self.conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=30)

    def get(self, path: str) -> tuple[int, bytes]:
        self.conn.request("GET", f"{self.prefix}/{path}")
        r = self.conn.getresponse()
        return r.status, r.read()

    def close(self) -> None:
        self.conn.close()


def nar_urls(base_url: str, hashes: list[str], compressions: tuple[str, ...] = ("zstd",)
             ) -> tuple[list[str], int]:
    """The NAR URLs a server's narinfos name for these store paths, and their total size."""
    client = KeepAlive(base_url)
    urls, total = [], 0
    try:
        for h in hashes:
            status, body = client.get(f"{h}.narinfo")
            if status != 200:
                raise RuntimeError(f"{base_url}/{h}.narinfo: HTTP {status}")
            fields = dict(line.split(": ", 1) for line in body.decode().splitlines()
                          if ": " in line)
            urls.append(f"{base_url.rstrip('/')}/{fields['URL']}")
            if fields.get("Compression") not in compressions:
                raise RuntimeError(f"{base_url}/{h}.narinfo: compression "
                                   f"{fields.get('Compression')!r}, expected "
                                   f"{' or '.join(compressions)}")
            total += int(fields.get("FileSize", 0))
    finally:
        client.close()
    return urls, total

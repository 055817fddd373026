"""The mixed load: narinfo lookups, uploads and a cached Bazel build on one server at once.

For a fixed window (``WINDOW_FACTOR`` times --duration: 20 s, 12 s with --small) each server gets,
all at the same time:

* narinfo lookups on 16 connections: ``wrk`` with the narinfo workload's Lua script cycling
  through the closure's narinfos; its p50, p99, request rate and errors are the figures;
* two ``nix copy --to`` uploads of the whole closure (zstd), each into a cache that is new
  for every upload, so every NAR really travels (flywheel: a cache created over its admin
  API, which sees no NAR until one of its own paths names it; nginx: a new directory under
  the WebDAV root);
* ``bazel clean`` then ``bazel build`` of the Bazel workload's generated workspace, every
  action a remote-cache hit (flywheel's HTTP cache, nginx's WebDAV site).

Uploads and builds start again as soon as they finish, so the load lasts the whole window;
those still under way when it ends are waited for and counted. GloriousFlywheel's target:
narinfo p99 ≤ 25 ms, no wrk errors, and every upload and build succeeding. nginx carries the
same load as the reference.
"""

from __future__ import annotations

import statistics
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import bazel_ws, clients
from bench.closure import Closure
from bench.latency import LatencyRow
from bench.servers import Flywheel, Nginx

if TYPE_CHECKING:
    from tests.support.bazelenv import Bazel

TARGET_P99_MS = 25.0
WINDOW_FACTOR = 4  # long enough for uploads and builds to overlap the lookups several times
CONNECTIONS, THREADS = 16, 2  # as in the narinfo workload's 16-connection row
UPLOADERS = 2
LEAD_SECONDS = 1.0  # uploads and the build are under way before the first lookup is timed

Log = Callable[[str], None]
Run = dict[str, Any]


def _jobs(what: str, jobs: list[Run]) -> str:
    ok = [j["seconds"] for j in jobs if j["ok"]]
    each = f", {statistics.median(ok):.1f} s each" if ok else ""
    return f"{what} {len(ok)}/{len(jobs)} ok{each}"


@dataclass
class MixedRow(LatencyRow):
    """narinfo latency under the mixed load: GloriousFlywheel's runs in ``loaded``, nginx's in
    ``reference`` (``idle`` stays empty); each run also lists its uploads and builds."""

    reference: list[Run] = field(default_factory=list)
    target_p99_ms: float = TARGET_P99_MS
    window_s: float = 0.0

    @staticmethod
    def clean(runs: list[Run]) -> bool:
        """No wrk errors, and every upload and build both ran and succeeded."""
        return all(r["errors"] == 0 and r["uploads"] and r["bazel"]
                   and all(j["ok"] for j in r["uploads"] + r["bazel"]) for r in runs)

    @property
    def met(self) -> bool | None:
        p99_met = super().met
        return None if p99_met is None else p99_met and self.clean(self.loaded)

    def describe(self, runs: list[Run]) -> str:
        if not runs:
            return "—"
        return (f"{super().describe(runs)}, {sum(r['errors'] for r in runs)} errors; "
                f"{_jobs('uploads', [j for r in runs for j in r['uploads']])}, "
                f"{_jobs('Bazel', [j for r in runs for j in r['bazel']])}")

    def cells(self) -> tuple[str, str, str]:
        return (self.describe(self.loaded), f"nginx: {self.describe(self.reference)}",
                f"p99 ≤ {self.target_p99_ms:g} ms, no errors")

    def as_dict(self) -> dict[str, Any]:
        d = super().as_dict()
        del d["idle"], d["idle_p99_ms"]
        return {**d, "window_s": self.window_s, "nginx": self.reference,
                "nginx_p50_ms": self.median_ms(self.reference, "p50_us"),
                "nginx_p99_ms": self.median_ms(self.reference, "p99_us"),
                "errors": sum(r["errors"] for r in self.loaded),
                "nginx_errors": sum(r["errors"] for r in self.reference),
                "jobs_ok": self.clean(self.loaded) if self.loaded else None}


@dataclass
class Target:
    """One server under the mixed load, and where each client finds it."""

    name: str
    url: str  # wrk's base URL
    paths: Path  # narinfo URL paths for wrk, one a line
    new_cache: Callable[[str], str]  # makes a fresh, empty cache of that name: its base URL
    bazel: Bazel
    bazel_flags: list[str]
    results: list[Run]  # where this server's runs go in the row
    netrc: Path | None = None
    reset: Callable[[], None] = lambda: None  # after a window: drop what it uploaded


def _flywheel_cache(fw: Flywheel) -> Callable[[str], str]:
    def create(name: str) -> str:
        # Over the admin API, as an operator would on a busy server; its defaults (public,
        # /nix/store) are what the uploads need.
        request = urllib.request.Request(
            f"{fw.url}/_api/v1/cache-config/{name}", data=b"{}", method="POST",
            headers={"Authorization": f"Bearer {fw.token}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30):
            return f"{fw.url}/{name}"

    return create


def _repeat(job: Callable[[int], Run], t0: float, stop: threading.Event,
            out: list[Run]) -> None:
    """``job`` again and again until ``stop`` is set (at least once). A failure ends it: it
    is the result, and retrying would only repeat it."""
    i = 0
    while True:
        started = time.monotonic()
        try:
            out.append({"ok": True, "started_s": started - t0, **job(i)})
        except Exception as e:  # whatever broke, the window goes on and reports it
            out.append({"ok": False, "started_s": started - t0,
                        "seconds": time.monotonic() - started, "error": str(e)[-2000:]})
            return
        i += 1
        if stop.is_set():
            return


def _narinfo_status(base_url: str, hash_part: str) -> int:
    client = clients.KeepAlive(base_url)
    try:
        return client.get(f"{hash_part}.narinfo")[0]
    finally:
        client.close()


def _window(t: Target, prefix: str, top: str, work: Path, window: float, script: Path) -> Run:
    """One server under the whole load for ``window`` seconds of lookups."""
    top_hash = Path(top).name[:32]

    def uploader(u: int) -> Callable[[int], Run]:
        def upload(i: int) -> Run:
            name = f"{prefix}-{u}-{i}"
            base = t.new_cache(name)
            timed = clients.nix_copy_to(f"{base}?compression=zstd", top,
                                        work / f"nix-home-mixed-{t.name}-{u}", t.netrc)
            status = _narinfo_status(base, top_hash)
            if status != 200:
                raise RuntimeError(f"{t.name} upload into {name}: top narinfo answers {status}")
            return {"cache": name, "seconds": timed.seconds}

        return upload

    def build(_i: int) -> Run:
        timed = bazel_ws.cached_build(t.bazel, t.bazel_flags, t.name)
        return {"seconds": timed.seconds, **timed.detail}

    stop = threading.Event()
    uploads: list[Run] = []
    builds: list[Run] = []
    t0 = time.monotonic()
    threads = [threading.Thread(target=_repeat, args=(uploader(u), t0, stop, uploads),
                                daemon=True) for u in range(UPLOADERS)]
    threads.append(threading.Thread(target=_repeat, args=(build, t0, stop, builds),
                                    daemon=True))
    for thread in threads:
        thread.start()
    try:
        time.sleep(LEAD_SECONDS)
        lookups_from = time.monotonic() - t0
        narinfo = clients.wrk(t.url, t.paths, CONNECTIONS, THREADS, window, script,
                              allow_errors=True)
        lookups_to = time.monotonic() - t0
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        t.reset()
    detail = dict(narinfo.detail)
    # Counted over every child that ended meanwhile (nix, bazel), so not wrk's own.
    del detail["client_cpu_cores"]
    return {**detail, "lookups_from_s": lookups_from, "lookups_to_s": lookups_to,
            "uploads": uploads, "bazel": builds}


def _prepare_bazel(t: Target, log: Log) -> None:
    """Fill the server's cache with the build's outputs if they are not there yet, then warm
    the Bazel server (JVM, analysis) with one cached build, which also proves that every
    action hits."""
    t0 = time.monotonic()
    s = t.bazel.build(*t.bazel_flags).summary
    warm = bazel_ws.cached_build(t.bazel, t.bazel_flags, t.name)
    filled = f"{s.executed} actions run and uploaded, {s.remote_cache_hit} hits" if s else "?"
    log(f"mixed: Bazel against {t.name} ready in {time.monotonic() - t0:.0f} s ({filled}); "
        f"a cached build takes {warm.seconds:.1f} s alone")


def run(fw: Flywheel, nginx: Nginx, closure: Closure, work: Path, runs: int, duration: float,
        bazel_actions: int, log: Log) -> MixedRow:
    from tests.support.bazelenv import Bazel  # the test suite's flags and parsing

    window = WINDOW_FACTOR * duration
    row = MixedRow("narinfo_mixed", f"narinfo, {CONNECTIONS} conns, during {UPLOADERS} "
                   f"uploads + a Bazel build", window_s=window)
    script = work / "cycle.lua"
    script.write_text(clients.WRK_SCRIPT)
    ws, _ = bazel_ws.generate(work / "mixed-bazel-ws", bazel_actions)

    def target(name: str, url: str, prefix: str, new_cache: Callable[[str], str],
               bazel_flags: list[str], results: list[Run], **kw: Any) -> Target:
        paths = work / f"mixed-narinfo-{name}.txt"
        paths.write_text("".join(f"{prefix}/{h}.narinfo\n" for h in closure.hashes))
        bz = Bazel(work / f"mixed-bazel-{name}", workspace=ws, max_idle_secs=3600,
                   timeout=3600)
        return Target(name, url, paths, new_cache, bz, bazel_flags, results, **kw)

    targets = [
        target("flywheel", fw.url, "/main", _flywheel_cache(fw),
               Bazel.remote_flags(fw.cache_url, token=fw.token), row.loaded,
               netrc=fw.netrc(work / "flywheel-mixed.netrc")),
        target("nginx", nginx.url("cache"), "", lambda name: f"{nginx.url('upload')}/{name}",
               Bazel.remote_flags(nginx.url("bazel") + "/cache"), row.reference,
               reset=lambda: nginx.empty("upload")),
    ]
    try:
        for t in targets:
            _prepare_bazel(t, log)
        for r in range(runs):
            # A B, then B A: drift on a shared machine falls on both sides alike.
            order = targets if r % 2 == 0 else targets[::-1]
            for t in order:
                result = {**_window(t, f"mixed-{r}", closure.top, work, window, script),
                          "went_first": t is order[0]}
                t.results.append(result)
                log(f"mixed [{r + 1}/{runs}] {t.name}: {row.describe([result])}")
    finally:
        for t in targets:
            t.bazel.shutdown()
    row.note = (f"for {window:g} s, wrk -t{THREADS} -c{CONNECTIONS} cycling all "
                f"{len(closure.hashes)} narinfos while {UPLOADERS} `nix copy --to` (each into "
                f"a new cache) and `bazel clean; bazel build` ({bazel_actions} genrules, all "
                "remote hits) repeat; flywheel gets its own HTTP caches, nginx its file:// "
                "cache and WebDAV sites; the target holds for flywheel, nginx is the reference")
    return row

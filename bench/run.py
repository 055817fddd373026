#!/usr/bin/env python3
"""GloriousFlywheel vs nginx: the benchmark suite (issue 5).

    bench/run [--small] [--runs N] [--json OUT] [--only narinfo,nar,subst,bazel,upload,push-memory]

``bench/run`` installs what is missing (Debian packages, the project's .venv) and runs this
file with the venv's Python. Every workload runs A (GloriousFlywheel) then B (nginx) per
round, for --runs rounds, and reports the median of the per-round ratios A/B (lower is
better), their spread, and the absolute medians. ``push-memory`` (issue 4) pushes one big
store path and holds client and server peak RSS against a bound; a violation makes the run
exit non-zero. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_PY = REPO / ".venv" / "bin" / "python"
if Path(sys.prefix).resolve() != (REPO / ".venv").resolve() and VENV_PY.exists() \
        and not os.environ.get("FLYWHEEL_BENCH_NO_REEXEC"):
    # Run by a system python3: switch to the project's venv (flywheel, rich, httpx live there).
    os.execv(str(VENV_PY), [str(VENV_PY), *sys.argv])
sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402

from bench import bazel_ws, clients, closure, latency, mixed, push_memory, report  # noqa: E402
from bench.clients import Timed  # noqa: E402
from bench.report import MemoryRow, Row  # noqa: E402
from bench.servers import (  # noqa: E402
    EMBEDDED,
    Backend,
    BuildGrid,
    Chunked,
    Flywheel,
    MemoryWatch,
    Nginx,
    PostgresS3,
    buildgrid_venv,
)

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
WORKLOADS = ("narinfo", "nar", "subst", "bazel", "upload", "latency-upload", "mixed",
             "push-memory")
STANDALONE = {"push-memory"}  # needs neither the closure nor the shared servers
BACKENDS = ("embedded", "postgres-s3")
# Long enough for any one download of the largest closure on a slow link.
S3_REDIRECT_TTL = 3600


def log(msg: str) -> None:
    console.log(msg)


def interleave(row: Row, runs: int, fa: Callable[[int], Timed], fb: Callable[[int], Timed]
               ) -> Row:
    """A B, then B A, then A B ...: drift on a shared machine (caches warming, a neighbour
    starting) falls on both sides alike."""
    for r in range(runs):
        if r % 2 == 0:
            a = fa(r)
            b = fb(r)
        else:
            b = fb(r)
            a = fa(r)
        a.detail["went_first"], b.detail["went_first"] = r % 2 == 0, r % 2 == 1
        row.a.append(a)
        row.b.append(b)
        log(f"{row.label} [{r + 1}/{runs}]: {row.a_name} {a.seconds:.3f} s, "
            f"{row.b_name} {b.seconds:.3f} s → {a.seconds / b.seconds:.2f}×")
    return row


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results = Path(args.results_dir).resolve()
        self.work = self.results / "work"
        self.rows: list[Row] = []
        self.memory: list[MemoryRow] = []
        self.latency: list[latency.LatencyRow] = []
        self.notes: list[str] = []
        self.info: dict[str, object] = {}
        self.fw: Flywheel | None = None
        self.nginx: Nginx | None = None
        self.backend: Backend = EMBEDDED
        self.push: push_memory.PushMemory | None = None

    # ---- set-up ---------------------------------------------------------------------------

    def setup(self) -> None:
        a = self.args
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        if a.backend != "embedded" and "push-memory" in a.only:
            self.notes.append(f"push-memory ran on the embedded backend, not {a.backend}")
        if set(a.only) <= STANDALONE:
            return
        spec = closure.ClosureSpec(paths=a.paths, total=a.size_mib * closure.MiB, seed=a.seed)
        self.closure = closure.build(spec, self.results, log)
        self.info["closure"] = {"key": spec.key, "top": self.closure.top,
                                "paths": len(self.closure.paths),
                                "nar_bytes": self.closure.nar_bytes,
                                "build_seconds": self.closure.build_seconds}
        secret, self.nginx_key = closure.signing_key(self.results)
        t0 = time.monotonic()
        self.filecache = closure.file_cache(self.closure, self.results, secret, log)
        self.info["file_cache_seconds"] = time.monotonic() - t0
        self.nginx = Nginx(self.work / "nginx", sites={
            "cache": (self.filecache, False),
            "upload": (self.work / "nginx-upload", True),
            "bazel": (self.work / "nginx-bazel", True),
        }).start()
        log(f"nginx ({self.nginx.workers} workers) on {self.nginx.url('cache')} (file:// cache), "
            f"{self.nginx.url('upload')} (WebDAV), {self.nginx.url('bazel')} (WebDAV)")
        if a.backend == "postgres-s3":
            # Set before it starts: teardown stops whatever part of it did start.
            self.backend = backend = PostgresS3(self.work / "backend",
                                                S3_REDIRECT_TTL if a.s3_redirect else 0)
            backend.start()
            assert backend.postgres and backend.seaweed
            log(f"PostgreSQL on 127.0.0.1:{backend.postgres.port}, SeaweedFS S3 on "
                f"{backend.seaweed.endpoint} (bucket {backend.bucket})")
        if a.chunked:
            self.backend = Chunked(self.backend)
        self.info["backend"] = self.backend.describe()
        fw = Flywheel(self.work / "flywheel-data", backend=self.backend).start()
        log(f"flywheel serve --workers {fw.workers} on {fw.url}, gRPC {fw.grpc_url} "
            f"({self.backend.name}); pushing the closure to it ...")
        t = clients.nix_copy_to(f"{fw.cache_url}?compression=zstd", self.closure.top,
                                self.work / "nix-home-populate",
                                fw.netrc(self.work / "flywheel.netrc"))
        self.info["flywheel_populate_seconds"] = t.seconds
        # A clean process for the read workloads: what its memory shows is theirs.
        fw.stop()
        # New ports: the old ones may linger.
        self.fw = fw = Flywheel(fw.data_dir, backend=self.backend).start()
        self.fw_key = fw.public_key()
        log(f"pushed in {t.seconds:.1f} s; flywheel restarted; keys: {self.fw_key}, "
            f"{self.nginx_key}")

    def teardown(self) -> None:
        for server in (self.fw, self.nginx):
            if server is not None:
                server.stop()
        self.backend.stop()  # after flywheel: a server losing its database would log errors
        if not self.args.keep_work:
            for p in self.work.glob("subst-*"):
                clients.rmtree_store(p)
            shutil.rmtree(self.work, ignore_errors=True)

    # ---- workloads ------------------------------------------------------------------------

    def narinfo(self) -> None:
        assert self.fw and self.nginx
        script = self.work / "cycle.lua"
        script.write_text(clients.WRK_SCRIPT)
        fw_paths, ng_paths = self.work / "narinfo-flywheel.txt", self.work / "narinfo-nginx.txt"
        fw_paths.write_text("".join(f"/main/{h}.narinfo\n" for h in self.closure.hashes))
        ng_paths.write_text("".join(f"/{h}.narinfo\n" for h in self.closure.hashes))
        d = self.args.duration
        fw_url, ng_url = self.fw.url, self.nginx.url("cache")
        for conns, threads in ((1, 1), (16, 2)):
            row = Row(f"narinfo_{conns}", f"narinfo, {conns} conn{'s' if conns > 1 else ''}",
                      "flywheel", "nginx", 1.5, "narinfo")

            def fa(_r: int, c: int = conns, t: int = threads) -> Timed:
                return clients.wrk(fw_url, fw_paths, c, t, d, script)

            def fb(_r: int, c: int = conns, t: int = threads) -> Timed:
                return clients.wrk(ng_url, ng_paths, c, t, d, script)

            interleave(row, self.args.runs, fa, fb)
            cpu = max(float(x.detail["client_cpu_cores"]) for x in row.b)  # type: ignore[arg-type]
            row.note = (f"wrk -t{threads} -c{conns} -d{d}s cycling all {len(self.closure.hashes)} "
                        f"narinfos; time = one pass at the measured rate; wrk used up to "
                        f"{cpu:.2f} of {os.cpu_count()} cores against nginx")
            self.rows.append(row)

    def nar(self) -> None:
        assert self.fw and self.nginx
        # Chunked NARs are served uncompressed (README, chunking): more bytes for the same
        # paths, so the per-pass times compare unequal amounts (the note says how much).
        fw_urls, fw_bytes = clients.nar_urls(
            self.fw.cache_url, self.closure.hashes,
            ("zstd", "none") if self.args.chunked else ("zstd",))
        ng_urls, ng_bytes = clients.nar_urls(self.nginx.url("cache"), self.closure.hashes)
        self.info["nar_file_bytes"] = {"flywheel": fw_bytes, "nginx": ng_bytes}
        if abs(fw_bytes - ng_bytes) > 0.02 * ng_bytes:
            self.notes.append(f"NAR bytes differ: flywheel {fw_bytes}, nginx {ng_bytes}")
        # A small closure is fetched several times per measurement (at least 256 MiB), so
        # that process start-up and scheduling noise stay small next to the transfer.
        passes = max(1, -(-256 * closure.MiB // max(ng_bytes, 1)))
        fw_urls, ng_urls = fw_urls * passes, ng_urls * passes
        mem = MemoryRow("memory_nar", "peak RSS, NAR downloads")
        for par, target in ((1, 1.5), (16, 1.3)):
            row = Row(f"nar_{par}", f"NAR download, {par} conn{'s' if par > 1 else ''}",
                      "flywheel", "nginx", target, "nar")

            def fa(_r: int, p: int = par) -> Timed:
                assert self.fw
                with MemoryWatch(self.fw.pid) as m:
                    t = clients.curl_fetch(fw_urls, p, self.work / "curl-flywheel.cfg")
                mem.flywheel.append(m.as_dict())
                return Timed(t.seconds / passes, t.client_cpu, {**t.detail, "passes": passes})

            def fb(_r: int, p: int = par) -> Timed:
                assert self.nginx
                with MemoryWatch(self.nginx.pid) as m:
                    t = clients.curl_fetch(ng_urls, p, self.work / "curl-nginx.cfg")
                mem.nginx.append(m.as_dict())
                return Timed(t.seconds / passes, t.client_cpu, {**t.detail, "passes": passes})

            interleave(row, self.args.runs, fa, fb)
            cpu = max(float(x.detail["client_cpu_cores"]) for x in row.b)  # type: ignore[arg-type]
            row.note = (f"curl{' --parallel-max 16' if par > 1 else ''}, every NAR once per "
                        f"pass ({ng_bytes / closure.MiB:.0f} MiB zstd), {passes} pass(es) per "
                        f"run; time per pass; curl used up to {cpu:.2f} cores against nginx")
            self.rows.append(row)
        self.memory.append(mem)

    def subst(self) -> None:
        assert self.fw and self.nginx
        base = Path(self.closure.top).name
        row = Row("subst", "substitution (nix copy --from)", "flywheel", "nginx", None)

        def run(url: str, key: str, who: str) -> Timed:
            root = self.work / f"subst-{who}"
            clients.rmtree_store(root)
            t = clients.nix_copy_from(url, self.closure.top, root, key,
                                      self.work / f"nix-home-subst-{who}")
            if not (root / "nix" / "store" / base).exists():
                raise RuntimeError(f"{who}: {base} missing after nix copy --from")
            clients.rmtree_store(root)
            return t

        fw_url, ng_url = self.fw.cache_url, self.nginx.url("cache")
        interleave(row, self.args.runs, lambda _r: run(fw_url, self.fw_key, "flywheel"),
                   lambda _r: run(ng_url, self.nginx_key, "nginx"))
        row.note = ("signatures checked: flywheel's cache key vs a key the file:// cache was "
                    "signed with; fresh store dir and XDG_CACHE_HOME per run")
        self.rows.append(row)

    def bazel(self) -> None:
        assert self.fw and self.nginx
        sys.path.insert(0, str(REPO))
        from tests.support.bazelenv import Bazel  # the test suite's flags and parsing

        ws, total = bazel_ws.generate(self.work / "bazel-ws", self.args.bazel_actions)
        self.info["bazel"] = {"actions": self.args.bazel_actions, "output_bytes": total}
        token = self.fw.token
        flags = {
            "flywheel-http": Bazel.remote_flags(self.fw.cache_url, token=token),
            "nginx": Bazel.remote_flags(self.nginx.url("bazel") + "/cache"),
            "flywheel-grpc": Bazel.remote_flags(self.fw.grpc_url, token=token,
                                                instance_name="main"),
        }
        bg: BuildGrid | None = None
        bgd = None if self.args.no_buildgrid else buildgrid_venv(self.results, log)
        if bgd is None:
            self.notes.append("BuildGrid column skipped (--no-buildgrid, or it did not install)")
        else:
            bg = BuildGrid(bgd, self.work / "buildgrid").start()
            flags["buildgrid"] = Bazel.remote_flags(bg.grpc_url, instance_name="main")
            log(f"BuildGrid {bg.grpc_url} (disk CAS, in-memory action cache)")
        bz = {k: Bazel(self.work / f"bazel-{k}", workspace=ws, max_idle_secs=3600,
                       timeout=3600) for k in flags}
        try:
            for k in ("flywheel-http", "nginx", "buildgrid"):
                if k not in flags:
                    continue
                t0 = time.monotonic()
                res = bz[k].build(*flags[k])
                log(f"bazel: populated {k} in {time.monotonic() - t0:.0f} s: "
                    f"{res.summary}")

            def timed(k: str) -> Timed:
                return bazel_ws.cached_build(bz[k], flags[k], k)

            for k in flags:  # warm-up: JVM, analysis cache; also proves every action hits
                log(f"bazel: warm-up {k}: {timed(k).seconds:.1f} s")
            http = Row("bazel_http", "Bazel cached build, HTTP", "flywheel", "nginx", 1.1)
            grpc = Row("bazel_grpc", "Bazel cached build, gRPC vs HTTP", "flywheel gRPC",
                       "flywheel HTTP", 1.0)
            peer = Row("bazel_buildgrid", "Bazel cached build, gRPC vs BuildGrid",
                       "flywheel gRPC", "BuildGrid", None)
            for r in range(self.args.runs):
                # Every round in another order, so no column always goes first.
                order = ["flywheel-http", "nginx", "flywheel-grpc"]
                order = order[r % 3:] + order[:r % 3]
                got = {k: timed(k) for k in (order if r % 2 == 0 else order[::-1])}
                a, b, g = got["flywheel-http"], got["nginx"], got["flywheel-grpc"]
                http.a.append(a)
                http.b.append(b)
                grpc.a.append(g)
                grpc.b.append(a)
                msg = (f"bazel [{r + 1}/{self.args.runs}]: flywheel HTTP {a.seconds:.2f} s, "
                       f"nginx {b.seconds:.2f} s, flywheel gRPC {g.seconds:.2f} s")
                if "buildgrid" in flags:
                    p = timed("buildgrid")
                    peer.a.append(g)
                    peer.b.append(p)
                    msg += f", BuildGrid {p.seconds:.2f} s"
                log(msg)
            note = (f"{self.args.bazel_actions} genrules, {total / closure.MiB:.0f} MiB of "
                    "outputs; `bazel clean` then `bazel build`, every action a remote hit")
            http.note = grpc.note = peer.note = note
            self.rows += [http, grpc] + ([peer] if peer.a else [])
        finally:
            for instance in bz.values():
                instance.shutdown()
            if bg is not None:
                bg.stop()

    def upload(self) -> None:
        assert self.nginx
        row = Row("upload", "upload (nix copy --to, zstd)", "flywheel", "nginx WebDAV", 1.5)
        mem = MemoryRow("memory_upload", "peak RSS, upload")
        top = self.closure.top
        top_hash = Path(top).name[:32]

        def fa(r: int) -> Timed:
            fw = Flywheel(self.work / f"flywheel-upload-{r}", backend=self.backend).start()
            try:
                netrc = fw.netrc(self.work / "flywheel-upload.netrc")
                with MemoryWatch(fw.pid) as m:
                    t = clients.nix_copy_to(f"{fw.cache_url}?compression=zstd", top,
                                            self.work / "nix-home-upload-flywheel", netrc)
                mem.flywheel.append(m.as_dict())
                status, _ = clients.KeepAlive(fw.cache_url).get(f"{top_hash}.narinfo")
                if status != 200:
                    raise RuntimeError(f"flywheel upload: top narinfo answers {status}")
            finally:
                fw.stop()
                shutil.rmtree(fw.data_dir, ignore_errors=True)
            return t

        def fb(r: int) -> Timed:
            assert self.nginx
            self.nginx.empty("upload")
            with MemoryWatch(self.nginx.pid) as m:
                t = clients.nix_copy_to(f"{self.nginx.url('upload')}/?compression=zstd", top,
                                        self.work / "nix-home-upload-nginx")
            mem.nginx.append(m.as_dict())
            if not (self.nginx.sites["upload"][0] / f"{top_hash}.narinfo").exists():
                raise RuntimeError("nginx upload: top narinfo missing")
            return t

        interleave(row, self.args.runs, fa, fb)
        row.note = ("into an empty cache each run: a new flywheel data dir (server started "
                    "before the clock) vs an emptied WebDAV root")
        self.rows.append(row)
        self.memory.append(mem)

    def latency_upload(self) -> None:
        assert self.fw
        # One worker, so the upload and the lookups share one event loop; the read server
        # is stopped meanwhile (both would use the data directory's run state).
        self.fw.stop()
        try:
            self.latency.append(latency.run(
                self.fw.data_dir, self.closure.hashes, self.work, self.results,
                self.args.push_size_mib * closure.MiB, self.args.seed, self.args.runs,
                self.args.duration, log, self.backend))
        finally:
            self.fw = Flywheel(self.fw.data_dir, backend=self.backend).start()

    def mixed(self) -> None:
        assert self.fw and self.nginx
        self.latency.append(mixed.run(self.fw, self.nginx, self.closure, self.work,
                                      self.args.runs, self.args.duration,
                                      self.args.bazel_actions, log))

    def push_memory(self) -> None:
        self.push = push_memory.run(self.results, self.work, self.args.push_size_mib * closure.MiB,
                                    self.args.seed, log)
        self.info["push_path"] = self.push.path.__dict__

    # ---- profile --------------------------------------------------------------------------

    def profile(self) -> None:
        from bench import profile

        assert self.fw
        out = self.results / "profile"
        profile.run(self, out, log)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true",
                   help="~40 paths / ~50 MiB closure, 100 Bazel actions, 3 runs (for development)")
    p.add_argument("--runs", type=int, help="interleaved rounds per workload (default 5; 3 "
                   "with --small)")
    p.add_argument("--json", dest="json_out", help="write results here "
                   "(default bench/results/latest.json)")
    p.add_argument("--only", help=f"comma-separated subset of {','.join(WORKLOADS)}")
    p.add_argument("--paths", type=int, help="store paths in the closure (default 400; 40)")
    p.add_argument("--size-mib", type=int, help="total file bytes in MiB (default 1024; 50)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--push-size-mib", type=int, help="the file in push-memory's one store "
                   "path, MiB (default 1024; 128)")
    p.add_argument("--bazel-actions", type=int, help="genrules (default 500; 100)")
    p.add_argument("--duration", type=float, help="seconds per wrk measurement (default 5; 3)")
    p.add_argument("--profile", action="store_true",
                   help="afterwards, profile flywheel's workers with py-spy during the "
                   "narinfo and NAR workloads (not timed)")
    p.add_argument("--no-buildgrid", action="store_true",
                   help="skip the optional BuildGrid (PyPI) column in the Bazel workload")
    p.add_argument("--backend", choices=BACKENDS, default="embedded",
                   help="where flywheel keeps metadata and content: embedded (SQLite and files "
                   "in its data dir) or postgres-s3 (a PostgreSQL and a SeaweedFS S3 server "
                   "started for the run)")
    p.add_argument("--s3-redirect", action="store_true",
                   help=f"with postgres-s3: answer NAR downloads with 302s to presigned URLs "
                   f"(redirect-ttl {S3_REDIRECT_TTL} s) instead of streaming them")
    p.add_argument("--chunked", action="store_true",
                   help="store NARs from 1 MiB up as content-defined chunks "
                   "([storage] chunk-nars-from)")
    p.add_argument("--keep-work", action="store_true", help="keep bench/results/work")
    p.add_argument("--results-dir", default=str(REPO / "bench" / "results"))
    a = p.parse_args()
    small = a.small
    a.runs = a.runs or (3 if small else 5)
    a.paths = a.paths or (40 if small else 400)
    a.size_mib = a.size_mib or (50 if small else 1024)
    a.push_size_mib = a.push_size_mib or (128 if small else 1024)
    a.bazel_actions = a.bazel_actions or (100 if small else 500)
    a.duration = a.duration or (3.0 if small else 5.0)
    a.only = [w.strip() for w in a.only.split(",")] if a.only else list(WORKLOADS)
    unknown = set(a.only) - set(WORKLOADS)
    if unknown:
        p.error(f"unknown workloads {sorted(unknown)}; choose from {', '.join(WORKLOADS)}")
    if a.s3_redirect and a.backend != "postgres-s3":
        p.error("--s3-redirect needs --backend postgres-s3")
    # Each backend (and each variant of it) keeps its own latest results.
    a.variant = a.backend + ("-redirect" if a.s3_redirect else "") + \
        ("-chunked" if a.chunked else "")
    suffix = "" if a.variant == "embedded" else f"-{a.variant}"
    a.json_out = Path(a.json_out or Path(a.results_dir) / f"latest{suffix}.json")
    return a


def main() -> int:
    args = parse()
    missing = [t for t in ("nix", "nginx", "wrk", "curl", "bazel") if not shutil.which(t)]
    if missing:
        console.print(f"missing: {', '.join(missing)}; run bench/run, which installs them")
        return 2
    started = time.monotonic()
    machine = report.machine()
    report.print_machine(console, machine)
    bench = Bench(args)
    failed: str | None = None
    try:
        bench.setup()
        for w in WORKLOADS:
            if w in args.only:
                t0 = time.monotonic()
                getattr(bench, w.replace("-", "_"))()
                bench.info[f"{w}_seconds"] = time.monotonic() - t0
        if args.profile:
            bench.profile()
    except (RuntimeError, OSError, AssertionError) as e:
        failed = f"{type(e).__name__}: {e}"
        console.print(f"[red]benchmark failed:[/] {failed}")
    except KeyboardInterrupt:
        failed = "interrupted"
    finally:
        bench.teardown()
    elapsed = time.monotonic() - started
    c = getattr(bench, "closure", None)
    title = (f"GloriousFlywheel ({args.variant}) / nginx, wall-time ratios (lower is better), "
             f"median of {args.runs} interleaved runs; closure "
             + (f"{len(c.paths)} paths, {c.nar_bytes / closure.MiB:.0f} MiB NAR" if c else "?"))
    if bench.rows or bench.memory or bench.latency:
        console.print(report.table(bench.rows, bench.memory, title, bench.latency))
    for r in [*bench.rows, *bench.latency]:
        if r.note:
            console.print(f"[dim]{r.label}: {r.note}[/]")
    for n in bench.notes:
        console.print(f"[yellow]note:[/] {n}")
    violations = bench.push.failures if bench.push else []
    if bench.push:
        console.print(report.push_table(bench.push))
    for v in violations:
        console.print(f"[bold red]FAILED[/] push-memory: {v}")
    console.print(f"total time {elapsed / 60:.1f} min")
    result = {
        "command": " ".join(["bench/run", *sys.argv[1:]]),
        "machine": machine,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "info": bench.info, "rows": [r.as_dict() for r in bench.rows],
        "memory": [m.as_dict() for m in bench.memory], "notes": bench.notes,
        "latency": [x.as_dict() for x in bench.latency],
        "push_memory": bench.push.as_dict() if bench.push else None,
        "markdown": "\n\n".join(
            ([report.markdown(bench.rows, bench.memory, bench.latency)]
             if bench.rows or bench.memory or bench.latency else [])
            + ([report.push_markdown(bench.push)] if bench.push else [])),
        "elapsed_seconds": elapsed, "failed": failed or ("; ".join(violations) or None),
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"results: {args.json_out}")
    return 1 if failed or violations else 0


if __name__ == "__main__":
    sys.exit(main())

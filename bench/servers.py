"""The servers under test, each in its own process group on loopback, and their memory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tests.support.postgres import PostgresServer, bin_dir
from tests.support.seaweed import WEED, SeaweedServer
from tests.support.server import clean_env, free_port

from bench.report import first_line

REPO = Path(__file__).resolve().parent.parent
FLYWHEEL = str(Path(sys.executable).with_name("flywheel"))
# Both servers get the same number of worker processes, whatever the machine.
SERVER_WORKERS = os.cpu_count() or 1


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def process_tree(root: int) -> list[int]:
    tree = _children()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def _status_kib(pid: int, field_name: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def worker_pids(root: int) -> list[int]:
    """A server's request-serving processes: nginx's worker processes, or flywheel's HTTP
    workers (``python -m flywheel.server.http_worker N`` under its supervisor)."""
    return [p for p in process_tree(root)[1:]
            if b"nginx: worker process" in _cmdline(p)
            or b"flywheel.server.http_worker" in _cmdline(p)]


class MemoryWatch:
    """Peak memory of a server's process tree while a workload runs:

    * ``hwm_sum_mib``: the sum over all its processes of VmHWM (each one's peak RSS), peaks
      reset at the start (``/proc/PID/clear_refs``). Shared pages count once per process,
      so this is an upper bound; it is the figure held against the target;
    * ``workers_hwm_sum_mib``: the same over the request-serving worker processes only;
    * ``sampled_rss_mib``: the largest sum of VmRSS seen at one instant (every 20 ms);
    * ``sampled_pss_mib``: the largest sum of Pss (shared pages divided among the sharers,
      what the processes cost together), sampled every 200 ms.
    """

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self.rss_kib = self.pss_kib = self.hwm_kib = self.workers_hwm_kib = 0
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> MemoryWatch:
        for pid in process_tree(self.root_pid):
            try:
                with open(f"/proc/{pid}/clear_refs", "w") as f:
                    f.write("5")  # reset VmHWM to the current RSS
            except OSError:
                pass
        self._thread.start()
        return self

    def _sample(self) -> None:
        tick = 0
        while not self._stop.wait(0.02):
            pids = process_tree(self.root_pid)
            self.rss_kib = max(self.rss_kib, sum(_status_kib(p, "VmRSS") for p in pids))
            if tick % 10 == 0:
                self.pss_kib = max(self.pss_kib, sum(_pss_kib(p) for p in pids))
            tick += 1

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        pids = process_tree(self.root_pid)
        self.processes = len(pids)
        self.hwm_kib = sum(_status_kib(p, "VmHWM") for p in pids)
        self.workers_hwm_kib = sum(_status_kib(p, "VmHWM") for p in worker_pids(self.root_pid))

    def as_dict(self) -> dict[str, float]:
        return {"hwm_sum_mib": self.hwm_kib / 1024,
                "workers_hwm_sum_mib": self.workers_hwm_kib / 1024,
                "sampled_rss_mib": self.rss_kib / 1024, "sampled_pss_mib": self.pss_kib / 1024,
                "processes": self.processes}


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server {proc.pid} exited ({proc.returncode}):\n"
                               f"{log.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status < 500:
                    return
        except urllib.error.HTTPError as e:
            if e.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout} s:\n"
                       f"{log.read_text(errors='replace')[-4000:]}")


def _stop_group(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@dataclass(frozen=True)
class Placement:
    """What ``flywheel serve`` on one data dir is told about where its state lives."""

    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def place(self, data_dir: Path) -> Placement: ...

    def describe(self) -> dict[str, object]: ...

    def stop(self) -> None: ...


class Embedded:
    """The defaults: SQLite and files, both inside the data dir; nothing to start."""

    name = "embedded"

    def place(self, data_dir: Path) -> Placement:
        return Placement()

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "database": "SQLite (data dir)", "storage": "files (data dir)"}

    def stop(self) -> None:
        pass


EMBEDDED = Embedded()


@dataclass
class Chunked:
    """Another backend with NARs from ``chunk_from`` up stored as content-defined chunks
    (``[storage] chunk-nars-from``): what chunking costs on the same workloads."""

    inner: Backend
    chunk_from: str = "1MiB"

    @property
    def name(self) -> str:
        return f"{self.inner.name}-chunked"

    def place(self, data_dir: Path) -> Placement:
        placed = self.inner.place(data_dir)
        return Placement(placed.args,
                         {**placed.env, "FLYWHEEL_STORAGE_CHUNK_NARS_FROM": self.chunk_from})

    def describe(self) -> dict[str, object]:
        return {**self.inner.describe(), "name": self.name,
                "nar_chunks": f"NARs from {self.chunk_from} as content-defined chunks"}

    def stop(self) -> None:
        self.inner.stop()


@dataclass
class PostgresS3:
    """The scale-out backends: one PostgreSQL server and one SeaweedFS S3 server for the run,
    started by the test suite's own helpers, so the benchmark runs them as the tests do."""

    root: Path
    redirect_ttl: int = 0  # > 0: NAR downloads are 302s to presigned URLs (README, scale-out)
    postgres: PostgresServer | None = None
    seaweed: SeaweedServer | None = None
    bucket: str = ""
    placed: dict[Path, Placement] = field(default_factory=dict)

    name = "postgres-s3"

    def start(self) -> PostgresS3:
        # Each held before it starts, so that stop() also ends one that failed half-way.
        self.postgres = PostgresServer(self.root / "postgres")
        self.postgres.start()
        # Room for every round's uploads (a full run writes tens of GiB).
        self.seaweed = SeaweedServer(self.root / "seaweed", volume_size_mb=1024,
                                     max_volumes=64)
        self.seaweed.start()
        self.bucket = self.seaweed.new_bucket_name()
        return self

    def place(self, data_dir: Path) -> Placement:
        """A new data dir gets a database and a bucket prefix of its own, a server started
        again on an existing one keeps them: as with the embedded defaults, a fresh data
        dir is an empty cache and a restart keeps the content."""
        if data_dir.exists() and data_dir in self.placed:
            return self.placed[data_dir]
        assert self.postgres and self.seaweed, "start() first"
        url = self.postgres.create_database()
        # What a deployment does before its replicas start (README, scale-out).
        up = subprocess.run([FLYWHEEL, "db", "upgrade", "--database-url", url,
                             "--data-dir", str(data_dir)], capture_output=True, text=True,
                            env=clean_env(), timeout=120)
        if up.returncode != 0:
            raise RuntimeError(f"flywheel db upgrade failed ({up.returncode}):\n"
                               f"{up.stdout}{up.stderr[-3000:]}")
        env = self.seaweed.env()
        if self.redirect_ttl:
            # No command-line flag for it: the setting's environment variable.
            env["FLYWHEEL_STORAGE_REDIRECT_TTL"] = str(self.redirect_ttl)
        placement = Placement(
            ("--database-url", url, "--storage", f"s3://{self.bucket}/{data_dir.name}",
             "--s3-endpoint", self.seaweed.endpoint), env)
        self.placed[data_dir] = placement
        return placement

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "database": first_line(str(bin_dir() / "postgres"), "--version"),
                "storage": f"SeaweedFS S3 ({first_line(WEED, 'version')})",
                "nar_downloads": (f"302 to presigned URLs (TTL {self.redirect_ttl} s)"
                                  if self.redirect_ttl else "streamed through the server")}

    def stop(self) -> None:
        for server in (self.seaweed, self.postgres):
            if server is not None:
                server.stop()


@dataclass
class Flywheel:
    """``flywheel serve`` as recommended for one machine: a worker per CPU."""

    data_dir: Path
    workers: int = field(default_factory=lambda: SERVER_WORKERS)
    port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    backend: Backend = EMBEDDED

    name = "flywheel"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cache_url(self) -> str:
        return f"{self.url}/main"

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def start(self) -> Flywheel:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        placement = self.backend.place(self.data_dir)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [FLYWHEEL, "serve", "--data-dir", str(self.data_dir),
             "--listen", f"127.0.0.1:{self.port}",
             "--grpc-listen", f"127.0.0.1:{self.grpc_port}",
             "--workers", str(self.workers), "--log-level", "warning", *placement.args],
            stdout=log, stderr=subprocess.STDOUT, env=clean_env(placement.env),
            start_new_session=True)
        _wait_http(f"{self.url}/readyz", self.proc, self.log_path)
        return self

    def stop(self) -> None:
        _stop_group(self.proc)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def worker_pids(self) -> list[int]:
        return worker_pids(self.pid)

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def public_key(self, cache: str = "main") -> str:
        # Asked of the server, which knows its backend (a local `flywheel cache info` would
        # need the database settings repeated).
        req = urllib.request.Request(f"{self.url}/_api/v1/cache-config/{cache}",
                                     headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return str(json.load(r)["public_key"])

    def netrc(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"machine 127.0.0.1\nlogin flywheel\npassword {self.token}\n")
        path.chmod(0o600)
        return path


_DAV = """
    dav_methods PUT;
    create_full_put_path on;
    client_max_body_size 0;
    dav_access user:rw group:r all:r;
"""


@dataclass
class Nginx:
    """nginx as one would run it in front of a file:// cache: a worker per CPU (as many as
    flywheel gets), sendfile, no access log, long keep-alive; WebDAV PUT on the upload and
    Bazel sites."""

    directory: Path
    sites: dict[str, tuple[Path, bool]]  # name -> (root, WebDAV PUT)
    workers: int = field(default_factory=lambda: SERVER_WORKERS)
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    name = "nginx"

    def url(self, site: str) -> str:
        return f"http://127.0.0.1:{self.ports[site]}"

    @property
    def log_path(self) -> Path:
        return self.directory / "error.log"

    def config(self) -> str:
        d = self.directory
        servers = []
        for site, (root, dav) in self.sites.items():
            self.ports.setdefault(site, free_port())
            servers.append(f"""
  server {{
    listen 127.0.0.1:{self.ports[site]};
    root {root};
{self._dav(root) if dav else ''}  }}""")
        user = "user root;\n" if os.geteuid() == 0 else ""
        return f"""{user}daemon off;
master_process on;
worker_processes {self.workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  types {{
    text/x-nix-narinfo narinfo;
    application/x-nix-nar nar zst xz;
  }}
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  access_log off;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  client_body_temp_path {d}/body;
{''.join(servers)}
}}
"""

    @staticmethod
    def _dav(root: Path) -> str:
        # Bodies are spooled next to the root, on the same file system, then renamed in.
        return f"    client_body_temp_path {root.parent / (root.name + '.tmp')};\n{_DAV}"

    def start(self) -> Nginx:
        self.directory.mkdir(parents=True, exist_ok=True)
        for root, dav in self.sites.values():
            root.mkdir(parents=True, exist_ok=True)
            if dav:
                (root.parent / (root.name + ".tmp")).mkdir(exist_ok=True)
        conf = self.directory / "nginx.conf"
        conf.write_text(self.config())
        log = (self.directory / "stdout.log").open("ab")
        self.proc = subprocess.Popen(
            [shutil.which("nginx") or "/usr/sbin/nginx", "-p", str(self.directory),
             "-c", str(conf), "-e", str(self.log_path)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for site in self.sites:
            _wait_http(self.url(site) + "/", self.proc, self.log_path)
        return self

    def stop(self) -> None:
        _stop_group(self.proc, signal.SIGQUIT)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def empty(self, site: str) -> None:
        """Make a site's root an empty directory again (a fresh upload target)."""
        root = self.sites[site][0]
        for child in root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


_BUILDGRID_CONFIG = """\
server:
  - !channel
    address: "127.0.0.1:{port}"
    insecure-mode: true
authorization:
  method: none
storages:
  - !disk-storage &main-storage
    path: {cas}
caches:
  - !lru-action-cache &main-action
    storage: *main-storage
    max-cached-refs: 1000000
    allow-updates: true
    cache-failed-actions: true
instances:
  - name: main
    services:
      - !action-cache
        cache: *main-action
      - !cas
        storage: *main-storage
      - !bytestream
        storage: *main-storage
"""


def buildgrid_venv(results: Path, log: Callable[[str], None]) -> Path | None:
    """A separate venv with BuildGrid (a Python REAPI server) from PyPI, made once; None
    (and the reason logged) when it does not install."""
    venv = results / "buildgrid-venv"
    bgd = venv / "bin" / "bgd"
    if bgd.exists():
        return bgd
    log("installing BuildGrid (PyPI) into bench/results/buildgrid-venv for a third column ...")
    shutil.rmtree(venv, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                       capture_output=True, timeout=120)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "buildgrid"], check=True,
                       capture_output=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as e:
        detail = getattr(e, "stderr", b"") or b""
        log(f"BuildGrid did not install, skipping it: {e} {detail.decode(errors='replace')[-500:]}")
        shutil.rmtree(venv, ignore_errors=True)
        return None
    return bgd if bgd.exists() else None


@dataclass
class BuildGrid:
    """BuildGrid's ``bgd server`` as a REAPI cache: disk CAS, in-memory action cache."""

    bgd: Path
    directory: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    name = "BuildGrid"

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.port}"

    def start(self) -> BuildGrid:
        cas = self.directory / "cas"
        cas.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "buildgrid.yml"
        conf.write_text(_BUILDGRID_CONFIG.format(port=self.port, cas=cas))
        log_path = self.directory / "buildgrid.log"
        self.proc = subprocess.Popen([str(self.bgd), "server", "start", str(conf)],
                                     stdout=log_path.open("ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"BuildGrid exited:\n{log_path.read_text()[-3000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.2)
        raise RuntimeError(f"BuildGrid did not listen:\n{log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        _stop_group(self.proc)

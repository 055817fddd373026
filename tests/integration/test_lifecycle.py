"""How ``flywheel serve`` starts, drains and stops, wherever a signal lands, and how it heals
a child that dies.

Each test records the server's whole process tree (from /proc) before it acts, and the
process group (the server starts in its own session), and checks that every one of those
processes is gone in the end. Servers drain for DRAIN seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from flywheel.bazel.reapi import bs_pb2, re_pb2
from flywheel.bazel.reapi_grpc import bs_grpc, re_grpc
from flywheel.nix.base32 import encode as b32
from tests.support.clientenv import Client, client_command
from tests.support.nixenv import Nix
from tests.support.server import FlywheelServer

DRAIN = 3.0
# A stop ends within the drain timeout, the 3 s given to aborted work to clean up and the
# kill a second later; the rest is for a slow machine.
STOP_DEADLINE = DRAIN + 7.0
NAR_SIZE = 1 << 20
PIECE = 64 << 10


# ---------------------------------------------------------------- processes


def _stat(pid: int) -> tuple[str, int, int] | None:
    """State, parent and process group of ``pid``, or None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2])


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")  # a zombie has stopped


def _all_pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def _tree(root: int) -> set[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        stat = _stat(pid)
        if stat is not None:
            children.setdefault(stat[1], []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def _group(pgid: int) -> set[int]:
    return {pid for pid in _all_pids() if (stat := _stat(pid)) and stat[2] == pgid}


def _living(pids: set[int]) -> set[int]:
    return {pid for pid in pids if _alive(pid)}


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def _child_pid(srv: FlywheelServer, *argv: str) -> int:
    """The server's process whose command line ends with ``argv``."""
    assert srv.proc is not None
    tail = "\0".join(argv).encode() + b"\0"
    for pid in _tree(srv.proc.pid):
        if _cmdline(pid).endswith(tail):
            return pid
    raise AssertionError(f"no process {' '.join(argv)} under the server")


def _handles_sigterm(pid: int) -> bool:
    """Whether the process catches or blocks SIGTERM: its own code runs."""
    bit = 1 << (signal.SIGTERM - 1)
    with contextlib.suppress(FileNotFoundError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("SigCgt", "SigBlk") and int(value, 16) & bit:
                return True
    return False


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 30,
              log: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}\n{log()}")
        time.sleep(0.01)


Make = Callable[..., FlywheelServer]


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Make]:
    """Servers on a data dir of this test, draining for ``drain`` seconds; whatever a test
    leaves running is killed afterwards."""
    made: list[FlywheelServer] = []

    def make(drain: float = DRAIN) -> FlywheelServer:
        srv = FlywheelServer(tmp_path / "data", workers=2,
                             env={"FLYWHEEL_DRAIN_TIMEOUT": str(drain)})
        made.append(srv)
        return srv

    yield make
    for srv in made:
        if srv.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(srv.proc.pid, signal.SIGKILL)
            srv.proc.wait(10)


def _stops_cleanly(srv: FlywheelServer, known: set[int], since: float,
                   deadline: float = STOP_DEADLINE, status: int = 0) -> float:
    """Wait for the server to exit with ``status`` and for every process it had (``known``)
    or has (its process group) to be gone, at most ``deadline`` seconds after ``since``;
    returns how long after ``since`` that was."""
    proc = srv.proc
    assert proc is not None
    try:
        rc = proc.wait(timeout=max(since + deadline - time.monotonic(), 0.1))
        _wait_for("no process of the server is left",
                  lambda: not _living(known | _group(proc.pid)),
                  max(since + deadline - time.monotonic(), 0.1), srv.log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # leave nothing to the next try
    assert rc == status, f"exit status {rc}\n{srv.log()}"
    return time.monotonic() - since


def _signal(srv: FlywheelServer, sig: int, group: bool) -> float:
    """Send ``sig``; returns when."""
    assert srv.proc is not None
    if group:  # as Ctrl-C does, or systemd
        os.killpg(srv.proc.pid, sig)
    else:  # as Kubernetes does: the container's main process only
        os.kill(srv.proc.pid, sig)
    return time.monotonic()


def _stop(srv: FlywheelServer, attempt: int) -> float:
    """Stop as an orchestrator does (SIGTERM to the main process) on even tries, as Ctrl-C
    does (SIGINT to the process group) on odd ones."""
    if attempt % 2:
        return _signal(srv, signal.SIGINT, group=True)
    return _signal(srv, signal.SIGTERM, group=False)


def _readyz(srv: FlywheelServer) -> tuple[int, str]:
    r = httpx.get(f"{srv.url}/readyz", timeout=5)
    return r.status_code, r.json().get("reason", "")


def _readyz_is(srv: FlywheelServer, expected: tuple[int, str]) -> bool:
    return _readyz(srv) == expected


# ---------------------------------------------------------------- start-up


def test_sigterm_right_after_the_process_starts(make_server: Make) -> None:
    srv = make_server()
    for attempt in range(4):
        proc = srv.launch()
        _wait_for("the server handles SIGTERM", partial(_handles_sigterm, proc.pid), 10,
                  srv.log)
        known = _tree(proc.pid)
        since = _stop(srv, attempt)
        _stops_cleanly(srv, known, since)
        # The first try's signal came during first start, which was finished, not cut.
        assert (srv.data_dir / "admin-token").exists()


def test_sigterm_as_soon_as_healthz_answers(make_server: Make) -> None:
    """The reported race: the first worker serves while the others are still starting
    (5 tries in 6 hung before)."""
    srv = make_server()
    for attempt in range(4):
        proc = srv.launch()

        def healthy(proc: subprocess.Popen[bytes] = proc) -> bool:
            assert proc.poll() is None, srv.log()
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(f"{srv.url}/healthz", timeout=1).status_code == 200
            return False

        _wait_for("/healthz answers", healthy, 30, srv.log)
        known = _tree(proc.pid)
        since = _stop(srv, attempt)
        _stops_cleanly(srv, known, since)


# ---------------------------------------------------------------- draining HTTP


def _nar(size: int) -> bytes:
    """A NAR of one regular file."""
    def string(s: bytes) -> bytes:
        return len(s).to_bytes(8, "little") + s + b"\0" * (-len(s) % 8)

    body = b"".join(string(t) for t in (b"nix-archive-1", b"(", b"type", b"regular",
                                        b"contents"))
    return body + size.to_bytes(8, "little") + os.urandom(size) + b"\0" * (-size % 8) + \
        string(b")")


class ChunkedPut:
    """A NAR upload sent piece by piece on its own connection, as slowly as the test likes."""

    def __init__(self, srv: FlywheelServer) -> None:
        self.body = _nar(NAR_SIZE)
        self.pieces = [self.body[i:i + PIECE] for i in range(0, len(self.body), PIECE)]
        # Uncompressed: the NAR's hash names the file.
        self.nar_hash = b32(hashlib.sha256(self.body).digest())
        self.path = f"/main/nar/{self.nar_hash}.nar"
        self.sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        self.sock.sendall(f"PUT {self.path} HTTP/1.1\r\nHost: flywheel\r\n"
                          f"Authorization: Bearer {srv.admin_token}\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n".encode())
        self.sent = 0

    def send(self, pieces: int) -> None:
        for piece in self.pieces[self.sent:self.sent + pieces]:
            self.sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.sent += pieces

    def finish(self) -> None:
        self.send(len(self.pieces))
        self.sock.sendall(b"0\r\n\r\n")

    def response(self) -> http.client.HTTPResponse:
        resp = http.client.HTTPResponse(self.sock)
        resp.begin()
        resp.read()
        return resp

    def put_narinfo(self, srv: FlywheelServer, hash_part: str) -> httpx.Response:
        narinfo = (f"StorePath: /nix/store/{hash_part}-lifecycle\nURL: nar/{self.nar_hash}.nar\n"
                   f"Compression: none\nNarHash: sha256:{self.nar_hash}\n"
                   f"NarSize: {len(self.body)}\nReferences: \n")
        return httpx.put(f"{srv.url}/main/{hash_part}.narinfo", content=narinfo,
                         auth=("x", srv.admin_token))


class ReadinessPoller(threading.Thread):
    """Asks /readyz on a new connection every few milliseconds until stopped, recording the
    answers in order: a status, or "closed" when nothing listens."""

    def __init__(self, srv: FlywheelServer) -> None:
        super().__init__(daemon=True)
        self.url = f"{srv.url}/readyz"
        self.seen: list[int | str] = []
        self.saw_503 = threading.Event()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                status: int | str = httpx.get(self.url, timeout=2).status_code
            except httpx.TransportError:
                status = "closed"
            self.seen.append(status)
            if status == 503:
                self.saw_503.set()
            time.sleep(0.005)


def _upload_files(srv: FlywheelServer) -> list[Path]:
    return sorted((srv.data_dir / "tmp").glob("upload-*"))


def test_sigterm_during_uploads_finishes_one_aborts_the_other(make_server: Make) -> None:
    srv = make_server().start()
    assert srv.proc is not None
    finishing, stalled = ChunkedPut(srv), ChunkedPut(srv)
    finishing.send(2)
    stalled.send(2)
    _wait_for("both uploads are being stored", lambda: len(_upload_files(srv)) == 2)
    known = _tree(srv.proc.pid)
    poller = ReadinessPoller(srv)
    poller.start()
    since = _signal(srv, signal.SIGTERM, group=False)
    try:
        assert poller.saw_503.wait(DRAIN), poller.seen
        assert _readyz(srv) == (503, "shutting down")
        # No new work is taken while draining, and the client is told to go elsewhere.
        refused = httpx.get(f"{srv.url}/main/nix-cache-info", timeout=5)
        assert refused.status_code == 503, refused.text
        assert refused.headers["connection"] == "close"
        assert refused.json()["error"] == "ServiceUnavailable"
        assert httpx.get(f"{srv.url}/healthz", timeout=5).status_code == 200
        # Work in flight goes on: this upload completes within the drain timeout...
        finishing.finish()
        assert finishing.response().status == 200
        # ...and this one, still incomplete when the drain timeout ends, is aborted.
        assert stalled.response().status == 503
        took = _stops_cleanly(srv, known, since)
    finally:
        poller.halt.set()
        poller.join()
    assert took >= DRAIN, "the stalled upload was not given the drain timeout"
    # /readyz said 503 from the start of the drain until the listener closed: never ready
    # again after the first 503, and no listener at the end.
    after = poller.seen[poller.seen.index(503):]
    assert set(after) <= {503, "closed"}, poller.seen
    assert after[-1] == "closed", poller.seen
    assert not list((srv.data_dir / "tmp").iterdir()), "an aborted upload left temp files"

    srv.start()
    assert finishing.put_narinfo(srv, "1" * 32).status_code == 200
    refused = stalled.put_narinfo(srv, "2" * 32)
    assert refused.status_code == 400, refused.text
    for hash_part, status in (("1" * 32, 200), ("2" * 32, 404)):
        assert httpx.get(f"{srv.url}/main/{hash_part}.narinfo").status_code == status
    assert httpx.get(f"{srv.url}{finishing.path}").content == finishing.body
    assert httpx.head(f"{srv.url}{stalled.path}").status_code == 404
    srv.stop()


def test_a_second_signal_stops_at_once(make_server: Make) -> None:
    srv = make_server(drain=60).start()
    assert srv.proc is not None
    stalled = ChunkedPut(srv)
    stalled.send(2)
    _wait_for("the upload is being stored", lambda: len(_upload_files(srv)) == 1)
    known = _tree(srv.proc.pid)
    _signal(srv, signal.SIGTERM, group=False)
    _wait_for("the drain has begun", lambda: _readyz(srv)[0] == 503)
    since = _signal(srv, signal.SIGTERM, group=False)
    _stops_cleanly(srv, known, since, deadline=3, status=128 + signal.SIGTERM)


# ---------------------------------------------------------------- draining gRPC


def _write_requests(name: str, data: bytes, pieces: queue.Queue[bytes | None]
                    ) -> Iterator[Any]:
    """ByteStream WriteRequests for ``data``, one piece each time the test releases one;
    None releases the rest, with finish_write."""
    offset = 0
    while offset < len(data):
        release = pieces.get()
        end = len(data) if release is None else offset + len(release)
        yield bs_pb2.WriteRequest(resource_name=name if offset == 0 else "",
                                  write_offset=offset, data=data[offset:end],
                                  finish_write=end == len(data))
        offset = end


def test_sigterm_during_bytestream_writes(make_server: Make) -> None:
    srv = make_server().start()
    assert srv.proc is not None
    metadata = [("authorization", f"Bearer {srv.admin_token}")]
    blobs = [os.urandom(NAR_SIZE) for _ in range(2)]
    digests = [re_pb2.Digest(hash=hashlib.sha256(b).hexdigest(), size_bytes=len(b))
               for b in blobs]
    with grpc.insecure_channel(srv.grpc_target) as channel:
        bytestream = bs_grpc.ByteStreamStub(channel)
        releases: list[queue.Queue[bytes | None]] = [queue.Queue(), queue.Queue()]
        calls = [bytestream.Write.future(
            _write_requests(f"main/uploads/{i}/blobs/{d.hash}/{d.size_bytes}", b, q),
            metadata=metadata, timeout=60)
            for i, (b, d, q) in enumerate(zip(blobs, digests, releases, strict=True))]
        for q in releases:
            q.put(b"x" * PIECE)

        def spooled() -> bool:
            spools = list((srv.data_dir / "tmp").glob("bs-*"))
            return len(spools) == 2 and all(p.stat().st_size for p in spools)

        _wait_for("both writes are open on the server", spooled)
        known = _tree(srv.proc.pid)
        since = _signal(srv, signal.SIGTERM, group=True)
        try:
            # With no HTTP request in flight the HTTP workers are gone at once; the gRPC
            # process says when it drains.
            _wait_for("the gRPC process drains",
                      lambda: "gRPC listener draining" in srv.log(), 10, srv.log)
            releases[0].put(None)
            assert calls[0].result(timeout=DRAIN).committed_size == NAR_SIZE
            aborted = calls[1].exception(timeout=STOP_DEADLINE)
        finally:
            releases[1].put(None)  # free the thread that feeds the aborted call
        assert isinstance(aborted, grpc.RpcError)
        assert aborted.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
        assert _stops_cleanly(srv, known, since) >= DRAIN

    srv.start()
    with grpc.insecure_channel(srv.grpc_target) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        cas = re_grpc.ContentAddressableStorageStub(channel)
        missing = cas.FindMissingBlobs(re_pb2.FindMissingBlobsRequest(
            instance_name="main", blob_digests=digests), metadata=metadata, timeout=30)
        assert [d.hash for d in missing.missing_blob_digests] == [digests[1].hash]
    srv.stop()


# ---------------------------------------------------------------- children that die


def _grpc_serving(srv: FlywheelServer) -> bool:
    with grpc.insecure_channel(srv.grpc_target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def test_children_are_started_again_and_end_with_the_supervisor(make_server: Make) -> None:
    srv = make_server().start()
    assert srv.proc is not None
    for argv, name in ((("flywheel.server.grpc.process",), "gRPC listener"),
                       (("flywheel.server.http_worker", "2"), "HTTP worker 2")):
        old = _child_pid(srv, *argv)
        os.kill(old, signal.SIGKILL)
        down = (503, f"{name} down, restarting")
        _wait_for(f"/readyz says the {name} is down", partial(_readyz_is, srv, down), 10,
                  srv.log)
        _wait_for("/readyz is ready again", lambda: _readyz(srv)[0] == 200, 30, srv.log)
        assert _child_pid(srv, *argv) != old
        assert f"{name} exited unexpectedly (killed by SIGKILL); starting it again in 0.5s" \
            in srv.log()
    assert _grpc_serving(srv)
    # The supervisor killed, its children notice and end.
    children = _tree(srv.proc.pid) - {srv.proc.pid}
    assert len(children) == 3  # two HTTP workers and the gRPC process
    os.kill(srv.proc.pid, signal.SIGKILL)
    _wait_for("every child has ended", lambda: not _living(children), 5, srv.log)


def test_a_child_that_does_not_stop_is_killed(make_server: Make) -> None:
    srv = make_server(drain=1).start()
    assert srv.proc is not None
    known = _tree(srv.proc.pid)
    os.kill(_child_pid(srv, "flywheel.server.http_worker", "1"), signal.SIGSTOP)
    since = _signal(srv, signal.SIGTERM, group=False)
    # Killed 4 s after the drain timeout (1 s here): the abort grace and a second more.
    assert _stops_cleanly(srv, known, since, status=1) >= 1 + 4
    assert "HTTP worker 1 (pid" in srv.log() and "did not stop in time" in srv.log()


# ---------------------------------------------------------------- watch-store


def test_watch_store_ends_at_once_on_a_second_signal(make_server: Make, nix: Nix,
                                                     tmp_path: Path) -> None:
    """The first signal pushes what is queued; when that push hangs on a server that stopped
    reading, a second signal ends the command at once, with the NAR dump that fed it."""
    srv = make_server().start()
    client = Client(tmp_path / "client")
    client.login(srv, srv.admin_token)
    output = tmp_path / "watch-store.log"
    with output.open("wb") as sink:  # a file, as a pipe nobody reads would block it
        watcher = subprocess.Popen([*client_command(), "watch-store", "main"],
                                   env=client.env, stdout=sink, stderr=sink)
    workers = [_child_pid(srv, "flywheel.server.http_worker", str(i)) for i in (1, 2)]
    path = ""
    try:
        _wait_for("watch-store watches", lambda: b"watching" in output.read_bytes())
        big = tmp_path / f"big-{os.urandom(4).hex()}"
        big.write_bytes(os.urandom(128 << 20))
        path = nix.run("nix-store", "--add", str(big)).stdout.strip()
        _wait_for("the upload streams", lambda: bool(_upload_files(srv)), 60, srv.log)
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        watcher.send_signal(signal.SIGTERM)
        _wait_for("watch-store flushes", lambda: b"stopping" in output.read_bytes())
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=2) == -signal.SIGTERM, output.read_text()

        def dumping() -> bool:
            return any(f"--dump\0{path}".encode() in _cmdline(pid) for pid in _all_pids())

        _wait_for("the NAR dump has ended", lambda: not dumping(), 5)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
        if path:  # 128 MiB that nothing refers to: not left in the store
            nix.run("nix-store", "--delete", path, check=False)
    srv.stop()

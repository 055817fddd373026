"""The ``flywheel`` client's pieces, without a server: profiles, nix.conf and netrc edits,
ordering, the upload scheduler, the display, the store watcher."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from flywheel.api.cache_config import CacheConfig
from flywheel.api.upload import UploadPathResult
from flywheel.client import netrc, profiles
from flywheel.client.errors import ApiError, ClientError
from flywheel.client.files import atomic_write
from flywheel.client.nixconf import NixConf
from flywheel.client.nixstore import PathInfo, _info, to_store_path
from flywheel.client.order import CycleError, Graph, topological
from flywheel.client.plan import PushPlan, plan_push
from flywheel.client.push import PushRunner
from flywheel.client.storedb import StoreDb
from flywheel.client.summary import PushSummary, human_bytes
from flywheel.client.upload import Progress
from flywheel.client.use import configure_nix, nix_conf_path
from flywheel.client.watch import Batcher, StoreWatcher

FIXTURES = Path(__file__).parents[2] / "fixtures" / "nix"
H = "0123456789abcdfghijklmnpqrsvwxyz"


def _store_path(i: int, name: str = "p") -> str:
    digits = H[i % 32] * 16 + H[(i // 32) % 32] * 16
    return f"/nix/store/{digits}-{name}{i}"


def _info_for(path: str, refs: tuple[str, ...] = (), size: int = 100,
              sigs: tuple[str, ...] = ()) -> PathInfo:
    return PathInfo(path=path, nar_hash="sha256:" + "00" * 32, nar_size=size,
                    references=refs, deriver=None, signatures=sigs, ca=None)


# ---------------------------------------------------------------- profiles and files


def test_profiles_round_trip_first_is_default_and_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "flywheel" / "config.toml"
    stored = profiles.load(path)
    tricky = 'tok"en\\with\ttabs-and-ünïcode'
    stored.add(profiles.Profile("prod", "https://cache.example", tricky))
    stored.add(profiles.Profile("staging", "http://127.0.0.1:9"))
    profiles.save(path, stored)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]   # no temp left

    again = profiles.load(path)
    assert again.default == "prod"
    assert again.select(None) == profiles.Profile("prod", "https://cache.example", tricky)
    assert again.select("staging").token is None
    again.add(profiles.Profile("staging", "http://127.0.0.1:9"), make_default=True)
    assert again.select(None).name == "staging"
    with pytest.raises(ClientError, match="no server profile named 'nope'"):
        again.select("nope")
    with pytest.raises(ClientError, match="flywheel login"):
        profiles.Profiles().select(None)


@pytest.mark.parametrize(("url", "expected"), [
    ("https://cache.example/", "https://cache.example"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("https://host/prefix/", "https://host/prefix"),
])
def test_urls_are_normalised(url: str, expected: str) -> None:
    assert profiles.normalize_url(url) == expected


@pytest.mark.parametrize("url", ["ftp://host", "cache.example", "http://", "http://h/?x=1",
                                 "https://user:pw@host", "http://h:99999"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ClientError):
        profiles.normalize_url(url)


def test_atomic_write_sets_the_exact_mode_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "f", "x", 0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


# ---------------------------------------------------------------- nix.conf and netrc

CONFIG = CacheConfig(substituter_endpoint="http://127.0.0.1:8080/main",
                     api_endpoint="http://127.0.0.1:8080/", public_key="host-main-1:AAAA",
                     is_public=False, store_dir="/nix/store", priority=41,
                     upstream_cache_key_names=["cache.nixos.org-1"])


def test_use_edits_are_additive_and_idempotent(tmp_path: Path) -> None:
    conf = tmp_path / "nix" / "nix.conf"
    conf.parent.mkdir()
    conf.write_text("# mine\nmax-jobs = 4  # keep\nextra-substituters = https://other  # x\n"
                    "include /etc/other.conf\n")
    net = tmp_path / "nix" / "netrc"
    first = configure_nix(CONFIG, "TOKEN", conf, net)
    text = conf.read_text()
    assert text.startswith("# mine\nmax-jobs = 4  # keep\n")
    assert "extra-substituters = https://other http://127.0.0.1:8080/main # x\n" in text
    assert "extra-trusted-public-keys = host-main-1:AAAA\n" in text
    assert f"netrc-file = {net}\n" in text
    assert "include /etc/other.conf\n" in text
    assert net.read_text() == "machine 127.0.0.1 password TOKEN\n"
    assert stat.S_IMODE(net.stat().st_mode) == 0o600
    assert len(first.changes) == 4

    second = configure_nix(CONFIG, "TOKEN", conf, net)
    assert not second.changed
    assert conf.read_text() == text

    # A new token replaces the host's entry; a rotated key replaces the old one.
    rotated = CONFIG.model_copy(update={"public_key": "host-main-1:BBBB"})
    third = configure_nix(rotated, "NEW", conf, net)
    assert net.read_text() == "machine 127.0.0.1 password NEW\n"
    assert "extra-trusted-public-keys = host-main-1:BBBB\n" in conf.read_text()
    assert "AAAA" not in conf.read_text()
    assert any("replaced" in c for c in third.changes)


def test_use_respects_a_netrc_file_already_chosen_and_a_later_reset(tmp_path: Path) -> None:
    mine = tmp_path / "my-netrc"
    mine.write_text("machine github.com login me password gh\n")
    conf = tmp_path / "nix.conf"
    conf.write_text(f"netrc-file = {mine}\nextra-substituters = http://x\nsubstituters = a\n")
    result = configure_nix(CONFIG, "T", conf, tmp_path / "unused")
    assert result.netrc_file == mine
    assert mine.read_text() == ("machine github.com login me password gh\n"
                                "machine 127.0.0.1 password T\n")
    assert not (tmp_path / "unused").exists()
    # `substituters = a` comes after the extra- line, so ours must go after it too.
    lines = conf.read_text().splitlines()
    assert lines[2] == "substituters = a"
    assert "extra-substituters = http://127.0.0.1:8080/main" in lines[3:]
    assert NixConf.parse(conf.read_text()).effective("substituters") == \
        ["a", "http://127.0.0.1:8080/main"]


def test_use_without_token_touches_no_netrc_and_warns_for_private(tmp_path: Path) -> None:
    result = configure_nix(CONFIG, None, tmp_path / "nix.conf", tmp_path / "netrc")
    assert not (tmp_path / "netrc").exists()
    assert "netrc-file" not in (tmp_path / "nix.conf").read_text()
    assert any("private" in n for n in result.notes)


def test_nix_conf_location(tmp_path: Path) -> None:
    assert nix_conf_path(None, {"XDG_CONFIG_HOME": "/x", "HOME": "/h"}) == \
        Path("/x/nix/nix.conf")
    assert nix_conf_path(None, {"HOME": "/h"}) == Path("/h/.config/nix/nix.conf")
    assert nix_conf_path(None, {"NIX_USER_CONF_FILES": "/a.conf:/b.conf", "HOME": "/h"}) == \
        Path("/a.conf")
    assert nix_conf_path(tmp_path, {"NIX_USER_CONF_FILES": "/a.conf"}) == tmp_path


def test_netrc_replaces_only_its_host() -> None:
    text = ("# creds\nmachine a.example login me password p1\n"
            "machine 127.0.0.1 login x\n  password old\n# keep\n"
            "default login anon password anon\nmacdef init\nmachine fake password no\n\n"
            "machine b password p2\n")
    new, change = netrc.set_password(text, "127.0.0.1", "NEW")
    assert change == "replaced the credentials for 127.0.0.1"
    assert "old" not in new
    for kept in ("# creds\n", "machine a.example login me password p1\n", "# keep\n",
                 "macdef init\nmachine fake password no\n\n", "machine b password p2\n"):
        assert kept in new
    assert new.endswith("machine 127.0.0.1 password NEW\n")
    assert netrc.set_password(new, "127.0.0.1", "NEW") == (new, None)
    assert [e.machine for e in netrc.entries(new)] == ["a.example", None, "b", "127.0.0.1"]


# ---------------------------------------------------------------- store queries, ordering


def test_path_info_json_is_read_as_the_upload_api_wants() -> None:
    entries = json.loads((FIXTURES / "path-info.json").read_text())
    top = _info(entries[0])
    assert top.nar_hash.startswith("sha256:") and len(top.nar_hash) == 7 + 64
    assert top.nar_hash == top.nar_hash.lower()
    assert top.references == ("/nix/store/wa190frw2yz61h2baqyr80kjz2k6mjh1-flywheel-fixture-dep",)
    assert top.signatures[0].startswith("flywheel-test-1:")
    bare = _info({"path": top.path, "narHash": entries[0]["narHash"], "narSize": 1})
    assert (bare.signatures, bare.references, bare.deriver, bare.ca) == ((), (), None, None)


def test_arguments_name_their_store_path(tmp_path: Path) -> None:
    p = "/nix/store/skycspy4d72lcbz8hqik6qgnx0c4qmzf-flywheel-fixture-top"
    assert to_store_path(p + "/bin/x") == p
    (tmp_path / "result").symlink_to(p)
    assert to_store_path(str(tmp_path / "result")) == p
    with pytest.raises(ClientError, match="not in the Nix store"):
        to_store_path(str(tmp_path))


def test_references_come_before_referrers() -> None:
    a, b, c, d = (_store_path(i) for i in range(4))
    refs = {d: [c, b, d], c: [a], b: [a], a: [a, "/nix/store/elsewhere"]}
    assert topological(refs) == [a, b, c, d]
    assert topological(dict(reversed(refs.items()))) == [a, b, c, d]
    graph = Graph.build(refs)
    assert graph.dependents(a) == {b, c, d}
    assert graph.dependents(d) == set()
    with pytest.raises(CycleError):
        topological({a: [b], b: [a]})


class FakeStore:
    def __init__(self, infos: dict[str, PathInfo]) -> None:
        self.infos = infos
        self.asked: list[str] = []

    def closure(self, paths: Iterable[str]) -> list[str]:
        return sorted(self.infos)

    def path_infos(self, paths: Iterable[str]) -> dict[str, PathInfo]:
        paths = list(paths)
        self.asked += paths
        return {p: self.infos[p] for p in paths}


class FakeServer:
    def __init__(self, present: set[str]) -> None:
        self.present = present

    def missing_paths(self, cache: str, hash_parts: list[str]) -> set[str]:
        return {h for h in hash_parts if h not in self.present}


def test_plan_asks_path_info_only_for_what_is_missing_and_filters_upstream() -> None:
    a, b, c, d = (_store_path(i) for i in range(4))
    store = FakeStore({a: _info_for(a), b: _info_for(b, (a,), sigs=("cache.nixos.org-1:x",)),
                       c: _info_for(c, (b,), sigs=("someone-else-1:y",)),
                       d: _info_for(d, (c, a))})
    plan = plan_push(FakeServer({a[11:43]}), store, "main", [d],
                     upstream_keys=["cache.nixos.org-1"])
    assert sorted(store.asked) == [b, c, d]
    assert (plan.present, plan.upstream, plan.order) == (1, [b], [c, d])
    everything = plan_push(FakeServer(set()), FakeStore(store.infos), "main", [d])
    assert everything.order == [a, b, c, d]


# ---------------------------------------------------------------- the upload scheduler


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def _add(self, kind: str, path: str) -> None:
        with self.lock:
            self.events.append((kind, path))

    def start(self, plan: PushPlan) -> None: ...
    def begin(self, path: str, size: int) -> None: self._add("begin", path)
    def advance(self, path: str, n: int) -> None: ...
    def retry(self, path: str, attempt: int, error: str, delay: float) -> None:
        self._add("retry", path)
    def done(self, path: str, result: UploadPathResult) -> None: self._add("done", path)
    def failed(self, path: str, error: str) -> None: self._add("failed", path)
    def stop(self) -> None: ...


def _plan(refs: dict[str, tuple[str, ...]]) -> PushPlan:
    infos = {p: _info_for(p, r) for p, r in refs.items()}
    graph = Graph.build(refs)
    return PushPlan("main", infos, graph.order(), graph, present=2, upstream=[])


def test_scheduler_runs_n_at_a_time_and_never_before_references() -> None:
    leaves = [_store_path(i, "leaf") for i in range(6)]
    top = _store_path(40, "top")
    plan = _plan({**{p: () for p in leaves}, top: tuple(leaves)})
    live, peak, finished = [0], [0], set()
    lock = threading.Lock()

    def upload(info: PathInfo, progress: Progress, cancel: threading.Event
               ) -> UploadPathResult:
        with lock:
            assert all(r in finished for r in info.references), "referrer before reference"
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.05)
        progress(info.nar_size)
        with lock:
            live[0] -= 1
            finished.add(info.path)
        return UploadPathResult(kind="Uploaded" if info.path != leaves[0] else "Deduplicated",
                                file_size=10, frac_deduplicated=0.0)

    result = PushRunner(upload, Recorder(), jobs=3).run(plan)
    assert peak[0] == 3
    assert (result.pushed, result.deduplicated, result.present, result.ok) == (6, 1, 2, True)
    assert result.pushed_bytes == 600 and result.sent_bytes == 700


def test_scheduler_retries_transient_failures_and_fails_dependents_of_a_refusal() -> None:
    a, b, c, d = (_store_path(i) for i in range(4))
    plan = _plan({a: (), b: (a,), c: (), d: (c,)})
    calls: dict[str, int] = {}

    def upload(info: PathInfo, progress: Progress, cancel: threading.Event
               ) -> UploadPathResult:
        calls[info.path] = calls.get(info.path, 0) + 1
        progress(50)
        if info.path == a and calls[a] < 3:
            raise ApiError(503, "busy")                 # transient: retried
        if info.path == c:
            raise ApiError(400, "NAR hash mismatch")    # a refusal: not retried
        return UploadPathResult(kind="Uploaded", file_size=1, frac_deduplicated=0.0)

    rec = Recorder()
    result = PushRunner(upload, rec, jobs=2, backoff=0).run(plan)
    assert calls == {a: 3, b: 1, c: 1}
    assert ("retry", a) in rec.events and ("retry", c) not in rec.events
    assert result.failed == {c: "NAR hash mismatch",
                             d: f"not uploaded: it needs {c.rsplit('/', 1)[1]}, which failed"}
    assert (result.pushed, result.ok) == (2, False)

    def broken(info: PathInfo, progress: Progress, cancel: threading.Event
               ) -> UploadPathResult:
        raise ClientError("connection reset")

    gave_up = PushRunner(broken, Recorder(), jobs=1, attempts=3, backoff=0).run(_plan({a: ()}))
    assert gave_up.failed == {a: "connection reset"}


def test_scheduler_stops_starting_uploads_once_the_token_is_refused() -> None:
    paths = [_store_path(i) for i in range(6)]
    plan = _plan({p: () for p in paths})
    calls: list[str] = []

    def upload(info: PathInfo, progress: Progress, cancel: threading.Event
               ) -> UploadPathResult:
        calls.append(info.path)
        raise ApiError(403, "token may not push")

    result = PushRunner(upload, Recorder(), jobs=2).run(plan)
    assert len(calls) == 2
    assert set(result.failed) == set(paths)
    assert sorted(result.failed.values())[-1] == "token may not push"
    assert sorted(result.failed.values())[0] == "not attempted: token may not push"


def test_summary_line() -> None:
    s = PushSummary(pushed=3, pushed_bytes=3 * 1024 * 1024, deduplicated=1, present=5,
                    upstream=2, failed={"/x": "e"}, sent_bytes=8 * 1024 * 1024, seconds=2.0)
    assert s.line() == ("pushed 3 (3.0 MiB), deduplicated 1, skipped 7 (5 already present, "
                        "2 upstream), failed 1, 4.0 MiB/s")
    assert PushSummary().line().endswith("failed 0, 0.0 MiB/s")
    assert [human_bytes(n) for n in (0, 1023, 1024, 5 << 30)] == \
        ["0 B", "1023 B", "1.0 KiB", "5.0 GiB"]


# ---------------------------------------------------------------- watching the store


def test_batches_wait_for_quiet_but_not_forever() -> None:
    b = Batcher(quiet=1.0, max_wait=10.0)
    b.add(["/nix/store/a"], now=0.0)
    assert not b.due(0.5)
    b.add(["/nix/store/b", "/nix/store/a"], now=0.9)
    assert not b.due(1.5) and b.due(2.0)
    for t in range(1, 11):
        b.add([f"/nix/store/c{t}"], now=0.9 + t * 0.9)
    assert b.due(10.0)
    assert b.take()[:2] == ["/nix/store/a", "/nix/store/b"]
    assert not b.due(100.0)


def test_watcher_pushes_new_rows_and_flushes_on_stop(tmp_path: Path) -> None:
    db_path = tmp_path / "db.sqlite"
    real = [str(tmp_path / f"p{i}") for i in range(4)]
    for p in real:
        Path(p).mkdir()
    with sqlite3.connect(db_path) as db:
        db.execute("CREATE TABLE ValidPaths (id integer primary key autoincrement, "
                   "path text unique not null)")
        db.execute("INSERT INTO ValidPaths (path) VALUES ('/old')")
    pushed: list[list[str]] = []

    def push(batch: list[str]) -> PushSummary:
        pushed.append(batch)
        return PushSummary(pushed=len(batch))

    store_db = StoreDb(db_path)
    watcher = StoreWatcher(store_db, push, on_error=print, poll=0.02,
                           batcher=Batcher(quiet=0.1))
    stop = threading.Event()
    thread = threading.Thread(target=lambda: watcher.run(stop))
    thread.start()
    with sqlite3.connect(db_path) as db:
        db.executemany("INSERT INTO ValidPaths (path) VALUES (?)",
                       [(real[0],), (real[1],), (real[1] + ".drv",)])
    deadline = time.monotonic() + 5
    while not pushed and time.monotonic() < deadline:
        time.sleep(0.02)
    with sqlite3.connect(db_path) as db:
        db.executemany("INSERT INTO ValidPaths (path) VALUES (?)", [(real[2],), (real[3],)])
    stop.set()
    thread.join(5)
    store_db.close()
    assert pushed == [real[:2], real[2:]]
    assert watcher.total.pushed == 4



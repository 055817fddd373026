"""Protocol-level tests of the gRPC Bazel remote cache (REAPI v2 subset, ByteStream, health)
against a real ``flywheel serve`` process.

Every refused request is checked for its exact status code *and* for leaving nothing stored
where it must not: no CAS blob under ``blobs/cas`` (nor visible through FindMissingBlobs), no
action-cache entry (GetActionResult with the admin token, and the per-cache entry count in
``/status``).

Most tests share one server (module scope); they use fresh random blobs and action digests,
so they do not depend on order. The size-bound tests share a second server started with
``--bazel-max-size 1MiB``.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
import zstandard
from grpc_health.v1 import health_pb2, health_pb2_grpc

from flywheel.bazel.reapi import bs_pb2, re_pb2
from flywheel.bazel.reapi_grpc import bs_grpc, re_grpc
from tests.support.server import FlywheelServer

EMPTY_HASH = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
KiB = 1 << 10
MiB = 1 << 20
TIMEOUT = 30  # per call: a hung call fails the test instead of the whole run
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 32 * MiB),
                   ("grpc.max_send_message_length", 32 * MiB)]
S = grpc.StatusCode
EXTRA_MESSAGES = 50  # what read_zstd accepts after the blob is complete before giving up

_counter = iter(range(1_000_000))


# ---------------------------------------------------------------- helpers


def blob(size: int = 100, compressible: bool = False) -> bytes:
    """Fresh, unique bytes; ``compressible`` ones are mostly text so zstd shrinks them."""
    head = os.urandom(32) + str(next(_counter)).encode()
    if compressible:
        return (head + b"flywheel " * (size // 9 + 1))[:size]
    return (head + os.urandom(size))[:size]


def digest(data: bytes) -> Any:
    return re_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def random_digest(size: int = 10) -> Any:
    return re_pb2.Digest(hash=os.urandom(32).hex(), size_bytes=size)


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(data)


def unzstd(data: bytes) -> bytes:
    """Decompress one or more concatenated zstd frames; refuses a truncated one."""
    out = []
    while data:
        frame = zstandard.ZstdDecompressor().decompressobj()
        out.append(frame.decompress(data))
        if not frame.eof:
            raise ValueError("truncated zstd frame")
        data = frame.unused_data
    return b"".join(out)


def auth(token: str | None) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")] if token else []


def rpc_error(call: Callable[..., Any], *args: Any, **kwargs: Any) -> grpc.RpcError:
    """The error a call ends with; fails the test if the call succeeds."""
    kwargs.setdefault("timeout", TIMEOUT)
    with pytest.raises(grpc.RpcError) as exc:
        result = call(*args, **kwargs)
        if isinstance(result, Iterator):  # server-streaming: errors surface while iterating
            list(result)
    return exc.value


def write_name(d: Any, instance: str = "main", compressor: str | None = None,
               upload: str | None = None) -> str:
    upload = upload or f"u-{next(_counter)}-{os.urandom(4).hex()}"
    kind = f"compressed-blobs/{compressor}" if compressor else "blobs"
    prefix = f"{instance}/" if instance else ""
    return f"{prefix}uploads/{upload}/{kind}/{d.hash}/{d.size_bytes}"


def read_name(d: Any, instance: str = "main", compressor: str | None = None) -> str:
    kind = f"compressed-blobs/{compressor}" if compressor else "blobs"
    prefix = f"{instance}/" if instance else ""
    return f"{prefix}{kind}/{d.hash}/{d.size_bytes}"


def write_requests(name: str, data: bytes, chunk: int = 64 * KiB, offset: int = 0,
                   finish: bool = True) -> Iterator[Any]:
    """ByteStream WriteRequests for ``data`` starting at ``offset``; the resource name goes
    in the first message only, as Bazel sends it."""
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] or [b""]
    for i, piece in enumerate(pieces):
        yield bs_pb2.WriteRequest(resource_name=name if i == 0 else "", write_offset=offset,
                                  data=piece, finish_write=finish and i == len(pieces) - 1)
        offset += len(piece)


# ---------------------------------------------------------------- the shared server


@dataclass
class Env:
    srv: FlywheelServer
    channel: grpc.Channel
    admin: str
    reader: str        # --pull main --pull alpha (read-only)
    pusher: str        # --push main
    alpha_pusher: str  # --push alpha (a private cache)
    beta_pusher: str   # --push beta (another private cache)

    def __post_init__(self) -> None:
        self.cap = re_grpc.CapabilitiesStub(self.channel)
        self.ac = re_grpc.ActionCacheStub(self.channel)
        self.cas = re_grpc.ContentAddressableStorageStub(self.channel)
        self.bs = bs_grpc.ByteStreamStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    # -- CAS --

    def upload(self, *blobs: bytes, instance: str = "main") -> list[Any]:
        digests = [digest(b) for b in blobs]
        reply = self.cas.BatchUpdateBlobs(re_pb2.BatchUpdateBlobsRequest(
            instance_name=instance,
            requests=[re_pb2.BatchUpdateBlobsRequest.Request(digest=d, data=b)
                      for d, b in zip(digests, blobs, strict=True)]),
            metadata=auth(self.admin), timeout=TIMEOUT)
        assert [r.status.code for r in reply.responses] == [0] * len(blobs), reply
        return digests

    def missing(self, *digests: Any) -> list[Any]:
        reply = self.cas.FindMissingBlobs(re_pb2.FindMissingBlobsRequest(
            instance_name="main", blob_digests=digests), metadata=auth(self.admin),
            timeout=TIMEOUT)
        return [(d.hash, d.size_bytes) for d in reply.missing_blob_digests]

    def stored(self, d: Any) -> bool:
        return self.missing(d) == []

    def cas_files(self) -> set[str]:
        root = self.srv.data_dir / "blobs" / "cas"
        return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()

    def read(self, d: Any, instance: str = "main", token: str | None = None,
             **kw: int) -> bytes:
        return b"".join(r.data for r in self.bs.Read(
            bs_pb2.ReadRequest(resource_name=read_name(d, instance), **kw),
            metadata=auth(token or self.admin), timeout=TIMEOUT))

    def read_zstd(self, d: Any, token: str | None = None) -> tuple[bytes, int]:
        """A compressed-blobs/zstd Read, taken until its frames decompress to the whole blob
        (then cancelled, see test_compressed_read_stream_ends); also returns how many more
        messages came before the stream ended, up to EXTRA_MESSAGES."""
        call = self.bs.Read(bs_pb2.ReadRequest(resource_name=read_name(d, compressor="zstd")),
                            metadata=auth(token or self.admin), timeout=TIMEOUT)
        received, extra = b"", 0
        try:
            for reply in call:
                if self._whole(received, d.size_bytes):
                    extra += 1
                    if extra >= EXTRA_MESSAGES:
                        break
                    continue
                received += reply.data
        finally:
            call.cancel()
        return received, extra

    @staticmethod
    def _whole(data: bytes, size: int) -> bool:
        """Whether ``data`` is complete zstd frames holding ``size`` bytes."""
        try:
            return bool(data) and len(unzstd(data)) == size
        except (ValueError, zstandard.ZstdError):
            return False

    # -- action cache --

    def update_ac(self, action: Any, result: Any, instance: str = "main",
                  token: str | None = None) -> Any:
        return self.ac.UpdateActionResult(re_pb2.UpdateActionResultRequest(
            instance_name=instance, action_digest=action, action_result=result),
            metadata=auth(token or self.admin), timeout=TIMEOUT)

    def get_ac(self, action: Any, instance: str = "main", token: str | None = None) -> Any:
        return self.ac.GetActionResult(re_pb2.GetActionResultRequest(
            instance_name=instance, action_digest=action),
            metadata=auth(token or self.admin), timeout=TIMEOUT)

    def ac_missing(self, action: Any, instance: str = "main") -> bool:
        try:
            self.get_ac(action, instance)
        except grpc.RpcError as e:
            assert e.code() == S.NOT_FOUND, e
            return True
        return False

    def ac_entries(self, cache: str) -> int:
        status = httpx.get(f"{self.srv.url}/status", headers={
            "Authorization": f"Bearer {self.admin}"}, timeout=TIMEOUT).json()
        return int(status["caches"][cache]["bazel"]["ac_entries"])


def _connect(srv: FlywheelServer) -> grpc.Channel:
    channel = grpc.insecure_channel(srv.grpc_target, options=CHANNEL_OPTIONS)
    # /readyz answers before the gRPC process listens.
    grpc.channel_ready_future(channel).result(timeout=30)
    return channel


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    srv = FlywheelServer(tmp_path_factory.mktemp("grpc") / "data").start()
    channel = None
    try:
        with ThreadPoolExecutor(4) as pool:  # each CLI start costs about a second
            created = [pool.submit(srv.cli, "cache", "create", name, "--private")
                       for name in ("alpha", "beta")]
            for job in created:
                job.result()
            tokens = list(pool.map(lambda a: srv.mint(*a), [
                ("reader", "--pull", "main", "--pull", "alpha"), ("pusher", "--push", "main"),
                ("alpha-ci", "--push", "alpha"), ("beta-ci", "--push", "beta")]))
        channel = _connect(srv)
        yield Env(srv, channel, srv.admin_token, *tokens)
    finally:
        if channel is not None:
            channel.close()
        srv.stop()


# ---------------------------------------------------------------- Capabilities


@pytest.mark.parametrize("instance", ["", "main"])
def test_capabilities_advertise_sha256_zstd_and_updates(env: Env, instance: str) -> None:
    caps = env.cap.GetCapabilities(re_pb2.GetCapabilitiesRequest(instance_name=instance),
                                   timeout=TIMEOUT)  # main is public: anonymous may read
    cache = caps.cache_capabilities
    assert list(cache.digest_functions) == [re_pb2.DigestFunction.SHA256]
    assert re_pb2.Compressor.ZSTD in cache.supported_compressors
    assert re_pb2.Compressor.ZSTD in cache.supported_batch_update_compressors
    assert cache.action_cache_update_capabilities.update_enabled is True
    assert cache.max_batch_total_size_bytes == 4 * MiB
    assert (caps.low_api_version.major, caps.low_api_version.minor) == (2, 0)
    assert caps.high_api_version.major == 2
    assert caps.high_api_version.minor >= caps.low_api_version.minor
    # Read-only callers are told updates are enabled too (Bazel 4 needs it); refused later.
    assert env.cap.GetCapabilities(
        re_pb2.GetCapabilitiesRequest(instance_name=instance), metadata=auth(env.reader),
        timeout=TIMEOUT).cache_capabilities.action_cache_update_capabilities.update_enabled


@pytest.mark.parametrize(("instance", "who", "code"), [
    ("alpha", None, S.UNAUTHENTICATED),           # private cache, anonymous
    ("no-such-cache", None, S.UNAUTHENTICATED),   # unknown cache looks private
    ("alpha", "garbage", S.UNAUTHENTICATED),      # not a token at all
    ("alpha", "beta", S.PERMISSION_DENIED),       # a valid token for another cache
    ("no-such-cache", "beta", S.PERMISSION_DENIED),
    ("no-such-cache", "admin", S.NOT_FOUND),      # only a caller with rights learns it's absent
])
def test_capabilities_access(env: Env, instance: str, who: str | None,
                             code: grpc.StatusCode) -> None:
    token = {None: None, "garbage": "not-a-jwt", "beta": env.beta_pusher,
             "admin": env.admin}[who]
    err = rpc_error(env.cap.GetCapabilities,
                    re_pb2.GetCapabilitiesRequest(instance_name=instance), metadata=auth(token))
    assert err.code() == code, err.details()


def test_capabilities_allowed_for_token_with_rights(env: Env) -> None:
    for token in (env.alpha_pusher, env.reader, env.admin):
        env.cap.GetCapabilities(re_pb2.GetCapabilitiesRequest(instance_name="alpha"),
                                metadata=auth(token), timeout=TIMEOUT)


BAD_INSTANCES = ["Main", "a/b", "x" * 51, "-lead", "_api", "main "]


@pytest.mark.parametrize("instance", BAD_INSTANCES)
def test_bad_instance_names_are_invalid_argument(env: Env, instance: str) -> None:
    md = auth(env.admin)
    err = rpc_error(env.cap.GetCapabilities,
                    re_pb2.GetCapabilitiesRequest(instance_name=instance), metadata=md)
    assert err.code() == S.INVALID_ARGUMENT, err.details()
    err = rpc_error(env.ac.GetActionResult, re_pb2.GetActionResultRequest(
        instance_name=instance, action_digest=random_digest()), metadata=md)
    assert err.code() == S.INVALID_ARGUMENT, err.details()
    err = rpc_error(env.cas.FindMissingBlobs, re_pb2.FindMissingBlobsRequest(
        instance_name=instance, blob_digests=[random_digest()]), metadata=md)
    assert err.code() == S.INVALID_ARGUMENT, err.details()
    data = blob()
    err = rpc_error(env.bs.Write, write_requests(write_name(digest(data), instance), data),
                    metadata=md)
    assert err.code() == S.INVALID_ARGUMENT, err.details()
    assert not env.stored(digest(data))


def test_a_51_character_instance_is_refused_but_50_is_a_name(env: Env) -> None:
    # 50 characters is a valid (unknown) cache name: NOT_FOUND for the admin, not a bad name.
    err = rpc_error(env.cap.GetCapabilities,
                    re_pb2.GetCapabilitiesRequest(instance_name="x" * 50),
                    metadata=auth(env.admin))
    assert err.code() == S.NOT_FOUND, err.details()


# ---------------------------------------------------------------- Health


@pytest.mark.parametrize("service", ["", "build.bazel.remote.execution.v2.ActionCache",
                                     "build.bazel.remote.execution.v2.ContentAddressableStorage",
                                     "google.bytestream.ByteStream"])
def test_health_check_serving(env: Env, service: str) -> None:
    reply = env.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_health_check_unknown_service_is_not_found(env: Env) -> None:
    err = rpc_error(env.health.Check, health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert err.code() == S.NOT_FOUND


# ---------------------------------------------------------------- ActionCache


def _result_with_output(d: Any, path: str = "out/a") -> Any:
    result = re_pb2.ActionResult(exit_code=0, stdout_raw=b"built\n")
    result.output_files.add(path=path, digest=d, is_executable=True)
    return result


def test_action_cache_round_trip(env: Env) -> None:
    out = blob(3000)
    (d,) = env.upload(out)
    result = _result_with_output(d)
    result.stderr_raw = b"warning\n"
    action = random_digest(140)
    before = env.ac_entries("main")
    returned = env.update_ac(action, result, token=env.pusher)
    assert returned == result
    assert env.get_ac(action, token=env.pusher) == result
    assert env.get_ac(action, instance="") == result  # "" is the main cache
    assert env.get_ac(action, token=env.reader) == result
    assert env.get_ac(action, token="") == result  # main is public: anonymous reads
    assert env.ac_entries("main") == before + 1
    # Updating the same action replaces its entry rather than adding one.
    result.exit_code = 0
    result.stdout_raw = b"rebuilt\n"
    env.update_ac(action, result, instance="", token=env.pusher)
    assert env.get_ac(action).stdout_raw == b"rebuilt\n"
    assert env.ac_entries("main") == before + 1


def test_get_unknown_action_is_not_found(env: Env) -> None:
    err = rpc_error(env.ac.GetActionResult, re_pb2.GetActionResultRequest(
        instance_name="main", action_digest=random_digest()), metadata=auth(env.admin))
    assert err.code() == S.NOT_FOUND


@pytest.mark.parametrize("where", ["output_file", "stdout", "stderr", "output_directory"])
def test_result_whose_output_is_missing_is_refused_then_accepted(env: Env, where: str) -> None:
    absent = blob(777)
    if where == "output_directory":
        # A Tree blob must parse as one to be usable; make it unique but empty of files.
        tree = re_pb2.Tree()
        tree.root.symlinks.add(name=absent[:8].hex(), target="elsewhere")
        absent = tree.SerializeToString()
    d = digest(absent)
    result = re_pb2.ActionResult(exit_code=0)
    if where == "output_file":
        result.output_files.add(path="out/missing", digest=d)
    elif where == "stdout":
        result.stdout_digest.CopyFrom(d)
    elif where == "stderr":
        result.stderr_digest.CopyFrom(d)
    else:
        result.output_directories.add(path="out/dir", tree_digest=d)
    action = random_digest()
    # Checked once, when written: an entry Bazel could not download is never stored.
    err = rpc_error(env.ac.UpdateActionResult, re_pb2.UpdateActionResultRequest(
        instance_name="main", action_digest=action, action_result=result),
        metadata=auth(env.pusher))
    assert err.code() == S.FAILED_PRECONDITION
    assert "upload" in (err.details() or "")
    err = rpc_error(env.ac.GetActionResult, re_pb2.GetActionResultRequest(
        instance_name="main", action_digest=action), metadata=auth(env.admin))
    assert err.code() == S.NOT_FOUND
    env.upload(absent)  # once the output is there, the entry is accepted and served
    env.update_ac(action, result, token=env.pusher)
    assert env.get_ac(action) == result


def test_result_whose_output_directory_file_is_missing_is_refused(env: Env) -> None:
    present, absent = blob(500), blob(600)
    env.upload(present)
    tree = re_pb2.Tree()
    tree.root.files.add(name="present", digest=digest(present))
    child = re_pb2.Directory()
    child.files.add(name="absent", digest=digest(absent))
    tree.children.append(child)
    tree.root.directories.add(name="sub", digest=digest(child.SerializeToString()))
    tree_bytes = tree.SerializeToString()
    env.upload(tree_bytes, child.SerializeToString())
    result = re_pb2.ActionResult(exit_code=0)
    result.output_directories.add(path="out/dir", tree_digest=digest(tree_bytes))
    action = random_digest()
    # Bazel would get a hit it cannot download ("Missing digest"), so it is not stored.
    err = rpc_error(env.ac.UpdateActionResult, re_pb2.UpdateActionResultRequest(
        instance_name="main", action_digest=action, action_result=result),
        metadata=auth(env.admin))
    assert err.code() == S.FAILED_PRECONDITION
    err = rpc_error(env.ac.GetActionResult, re_pb2.GetActionResultRequest(
        instance_name="main", action_digest=action), metadata=auth(env.admin))
    assert err.code() == S.NOT_FOUND
    env.upload(absent)
    env.update_ac(action, result)
    assert env.get_ac(action) == result


BAD_PATHS = ["../x", "/abs", "a/../../x", "a/./b", "a//b", ""]


@pytest.mark.parametrize("path", BAD_PATHS)
@pytest.mark.parametrize("kind", ["file", "directory", "symlink"])
def test_invalid_output_path_is_refused_and_not_stored(env: Env, path: str, kind: str) -> None:
    (d,) = env.upload(blob())
    result = re_pb2.ActionResult(exit_code=0)
    if kind == "file":
        result.output_files.add(path=path, digest=d)
    elif kind == "directory":
        result.output_directories.add(path=path, tree_digest=d)
    else:
        result.output_symlinks.add(path=path, target="x")
    action = random_digest()
    before = env.ac_entries("main")
    err = rpc_error(env.ac.UpdateActionResult, re_pb2.UpdateActionResultRequest(
        instance_name="main", action_digest=action, action_result=result),
        metadata=auth(env.admin))
    assert err.code() == S.INVALID_ARGUMENT, err.details()
    assert env.ac_missing(action)
    assert env.ac_entries("main") == before


BAD_DIGESTS = [
    pytest.param("A" * 64, 10, id="uppercase"),
    pytest.param("a" * 63, 10, id="63-chars"),
    pytest.param("a" * 65, 10, id="65-chars"),
    pytest.param("g" * 64, 10, id="non-hex"),
    pytest.param("", 0, id="empty"),
    pytest.param("a" * 64, -1, id="negative-size"),
]


@pytest.mark.parametrize(("hash_", "size"), BAD_DIGESTS)
def test_malformed_action_digest_is_invalid_argument(env: Env, hash_: str, size: int) -> None:
    bad = re_pb2.Digest(hash=hash_, size_bytes=size)
    err = rpc_error(env.ac.GetActionResult, re_pb2.GetActionResultRequest(
        instance_name="main", action_digest=bad), metadata=auth(env.admin))
    assert err.code() == S.INVALID_ARGUMENT, err.details()
    before = env.ac_entries("main")
    err = rpc_error(env.ac.UpdateActionResult, re_pb2.UpdateActionResultRequest(
        instance_name="main", action_digest=bad, action_result=re_pb2.ActionResult()),
        metadata=auth(env.admin))
    assert err.code() == S.INVALID_ARGUMENT, err.details()
    assert env.ac_entries("main") == before


@pytest.mark.parametrize(("hash_", "size"), BAD_DIGESTS[:-2] + BAD_DIGESTS[-1:])
def test_malformed_output_digest_is_invalid_argument(env: Env, hash_: str, size: int) -> None:
    result = _result_with_output(re_pb2.Digest(hash=hash_, size_bytes=size))
    action = random_digest()
    before = env.ac_entries("main")
    err = rpc_error(env.ac.UpdateActionResult, re_pb2.UpdateActionResultRequest(
        instance_name="main", action_digest=action, action_result=result),
        metadata=auth(env.admin))
    assert err.code() == S.INVALID_ARGUMENT, err.details()
    assert env.ac_missing(action)
    assert env.ac_entries("main") == before


def test_action_cache_is_isolated_between_caches(env: Env) -> None:
    (d,) = env.upload(blob(), instance="alpha")
    result = _result_with_output(d)
    action = random_digest()
    env.update_ac(action, result, instance="alpha", token=env.alpha_pusher)
    assert env.get_ac(action, instance="alpha", token=env.alpha_pusher) == result
    assert env.get_ac(action, instance="alpha", token=env.reader) == result
    # Not in beta nor main, even for the admin who may read everything.
    for other in ("beta", "main"):
        err = rpc_error(env.ac.GetActionResult, re_pb2.GetActionResultRequest(
            instance_name=other, action_digest=action), metadata=auth(env.admin))
        assert err.code() == S.NOT_FOUND, other
    # Beta's token may neither read nor write alpha, and its own write stays in beta.
    err = rpc_error(env.ac.GetActionResult, re_pb2.GetActionResultRequest(
        instance_name="alpha", action_digest=action), metadata=auth(env.beta_pusher))
    assert err.code() == S.PERMISSION_DENIED
    poisoned = re_pb2.ActionResult(exit_code=1, stdout_raw=b"poison")
    err = rpc_error(env.ac.UpdateActionResult, re_pb2.UpdateActionResultRequest(
        instance_name="alpha", action_digest=action, action_result=poisoned),
        metadata=auth(env.beta_pusher))
    assert err.code() == S.PERMISSION_DENIED
    env.update_ac(action, poisoned, instance="beta", token=env.beta_pusher)
    assert env.get_ac(action, instance="alpha") == result
    assert env.get_ac(action, instance="beta") == poisoned


@pytest.mark.parametrize(("who", "code"), [("reader", S.PERMISSION_DENIED),
                                           ("alpha", S.PERMISSION_DENIED),
                                           (None, S.UNAUTHENTICATED)])
def test_update_without_push_right_is_refused_and_not_stored(env: Env, who: str | None,
                                                              code: grpc.StatusCode) -> None:
    token = {"reader": env.reader, "alpha": env.alpha_pusher, None: None}[who]
    action = random_digest()
    before = env.ac_entries("main")
    err = rpc_error(env.ac.UpdateActionResult, re_pb2.UpdateActionResultRequest(
        instance_name="main", action_digest=action,
        action_result=re_pb2.ActionResult(exit_code=0, stdout_raw=b"x")),
        metadata=auth(token))
    assert err.code() == code, err.details()
    assert env.ac_missing(action)
    assert env.ac_entries("main") == before


# ---------------------------------------------------------------- CAS


def test_find_missing_blobs(env: Env) -> None:
    present, absent = blob(1000), blob(1000)
    (p,) = env.upload(present)
    a = digest(absent)
    wrong_size = re_pb2.Digest(hash=p.hash, size_bytes=p.size_bytes + 1)
    empty = re_pb2.Digest(hash=EMPTY_HASH, size_bytes=0)
    reply = env.cas.FindMissingBlobs(re_pb2.FindMissingBlobsRequest(
        instance_name="main", blob_digests=[empty, p, a, wrong_size]), timeout=TIMEOUT)
    missing = [(d.hash, d.size_bytes) for d in reply.missing_blob_digests]
    assert sorted(missing) == sorted([(a.hash, a.size_bytes), (p.hash, p.size_bytes + 1)])
    assert env.missing(empty) == []
    assert env.missing() == []
    # Stored once, but held per cache: another cache does not report it present (that
    # would tell anyone whether a private build produced a given file).
    reply = env.cas.FindMissingBlobs(re_pb2.FindMissingBlobsRequest(
        instance_name="alpha", blob_digests=[p, a]), metadata=auth(env.alpha_pusher),
        timeout=TIMEOUT)
    assert sorted(d.hash for d in reply.missing_blob_digests) == sorted([p.hash, a.hash])


@pytest.mark.parametrize(("hash_", "size"), BAD_DIGESTS)
def test_find_missing_blobs_malformed_digest(env: Env, hash_: str, size: int) -> None:
    err = rpc_error(env.cas.FindMissingBlobs, re_pb2.FindMissingBlobsRequest(
        instance_name="main", blob_digests=[random_digest(),
                                            re_pb2.Digest(hash=hash_, size_bytes=size)]))
    assert err.code() == S.INVALID_ARGUMENT


def test_find_missing_blobs_on_private_cache_needs_a_token(env: Env) -> None:
    err = rpc_error(env.cas.FindMissingBlobs, re_pb2.FindMissingBlobsRequest(
        instance_name="alpha", blob_digests=[random_digest()]))
    assert err.code() == S.UNAUTHENTICATED


def test_batch_update_identity_and_zstd_with_per_blob_statuses(env: Env) -> None:
    plain, packed, lied_about, short_zstd = blob(2000), blob(50_000, True), blob(300), blob(900)
    other = blob(300)
    bad_zstd_target = blob(100)
    Req = re_pb2.BatchUpdateBlobsRequest.Request
    requests = [
        Req(digest=digest(plain), data=plain),
        Req(digest=digest(packed), data=zstd(packed), compressor=re_pb2.Compressor.ZSTD),
        Req(digest=digest(lied_about), data=other),                # hash mismatch
        Req(digest=digest(short_zstd), data=zstd(short_zstd[:-1]),  # decompresses too short
            compressor=re_pb2.Compressor.ZSTD),
        Req(digest=digest(bad_zstd_target), data=b"not a zstd frame",
            compressor=re_pb2.Compressor.ZSTD),
        Req(digest=re_pb2.Digest(hash="Z" * 64, size_bytes=3), data=b"abc"),  # malformed
        Req(digest=re_pb2.Digest(hash=EMPTY_HASH, size_bytes=0), data=b""),   # always fine
    ]
    files = env.cas_files()
    reply = env.cas.BatchUpdateBlobs(re_pb2.BatchUpdateBlobsRequest(
        instance_name="main", requests=requests), metadata=auth(env.pusher), timeout=TIMEOUT)
    codes = [r.status.code for r in reply.responses]
    ok, invalid = S.OK.value[0], S.INVALID_ARGUMENT.value[0]
    assert codes == [ok, ok, invalid, invalid, invalid, invalid, ok], reply
    assert [r.digest for r in reply.responses] == [r.digest for r in requests]
    assert env.cas_files() - files == {digest(plain).hash, digest(packed).hash}
    assert env.read(digest(packed)) == packed  # stored decompressed
    assert env.read(digest(plain)) == plain
    assert env.missing(digest(lied_about), digest(other), digest(short_zstd),
                       digest(bad_zstd_target)) != []
    assert len(env.missing(digest(lied_about), digest(other), digest(short_zstd),
                           digest(bad_zstd_target))) == 4


def test_batch_update_over_4mib_is_refused_whole(env: Env) -> None:
    first, second = blob(2 * MiB), blob(2 * MiB + 1)
    files = env.cas_files()
    err = rpc_error(env.cas.BatchUpdateBlobs, re_pb2.BatchUpdateBlobsRequest(
        instance_name="main", requests=[
            re_pb2.BatchUpdateBlobsRequest.Request(digest=digest(b), data=b)
            for b in (first, second)]), metadata=auth(env.admin))
    assert err.code() == S.INVALID_ARGUMENT, err.details()
    assert env.cas_files() == files
    assert len(env.missing(digest(first), digest(second))) == 2


@pytest.mark.parametrize(("instance", "who", "code"), [
    ("main", "reader", S.PERMISSION_DENIED), ("main", None, S.UNAUTHENTICATED),
    ("alpha", "beta", S.PERMISSION_DENIED)])
def test_batch_update_without_push_right_is_refused(env: Env, instance: str, who: str | None,
                                                    code: grpc.StatusCode) -> None:
    token = {"reader": env.reader, "beta": env.beta_pusher, None: None}[who]
    data = blob()
    files = env.cas_files()
    err = rpc_error(env.cas.BatchUpdateBlobs, re_pb2.BatchUpdateBlobsRequest(
        instance_name=instance,
        requests=[re_pb2.BatchUpdateBlobsRequest.Request(digest=digest(data), data=data)]),
        metadata=auth(token))
    assert err.code() == code
    assert env.cas_files() == files
    assert not env.stored(digest(data))


@pytest.mark.parametrize("accept_zstd", [False, True])
def test_batch_read_blobs(env: Env, accept_zstd: bool) -> None:
    big, small = blob(200_000, compressible=True), blob(50)
    digests = env.upload(big, small)
    absent = digest(blob(10))
    empty = re_pb2.Digest(hash=EMPTY_HASH, size_bytes=0)
    wrong_size = re_pb2.Digest(hash=digests[1].hash, size_bytes=51)
    reply = env.cas.BatchReadBlobs(re_pb2.BatchReadBlobsRequest(
        instance_name="main", digests=[*digests, absent, empty, wrong_size],
        acceptable_compressors=[re_pb2.Compressor.ZSTD] if accept_zstd else []),
        timeout=TIMEOUT)
    by_entry = list(reply.responses)
    assert [r.status.code for r in by_entry] == [0, 0, S.NOT_FOUND.value[0], 0,
                                                  S.NOT_FOUND.value[0]]
    assert [r.digest for r in by_entry] == [*digests, absent, empty, wrong_size]

    def content(r: Any) -> bytes:
        if r.compressor == re_pb2.Compressor.ZSTD:
            return unzstd(r.data)
        assert r.compressor == re_pb2.Compressor.IDENTITY
        return bytes(r.data)

    assert content(by_entry[0]) == big
    assert content(by_entry[1]) == small
    assert content(by_entry[3]) == b""
    assert by_entry[2].data == b"" and by_entry[4].data == b""
    if accept_zstd:
        assert by_entry[0].compressor == re_pb2.Compressor.ZSTD
        assert len(by_entry[0].data) < len(big) // 4
    else:
        assert all(r.compressor == re_pb2.Compressor.IDENTITY for r in by_entry)


def test_batch_read_over_4mib_is_invalid_argument(env: Env) -> None:
    err = rpc_error(env.cas.BatchReadBlobs, re_pb2.BatchReadBlobsRequest(
        instance_name="main", digests=[random_digest(2 * MiB), random_digest(2 * MiB + 1)]))
    assert err.code() == S.INVALID_ARGUMENT


def test_batch_read_private_cache_needs_read_right(env: Env) -> None:
    (d,) = env.upload(blob())
    err = rpc_error(env.cas.BatchReadBlobs, re_pb2.BatchReadBlobsRequest(
        instance_name="alpha", digests=[d]), metadata=auth(env.beta_pusher))
    assert err.code() == S.PERMISSION_DENIED


# -- GetTree


@dataclass
class UploadedTree:
    root: Any
    directories: dict[str, Any]  # hash -> Directory


def _upload_tree(env: Env) -> UploadedTree:
    """root -> {a, b}; a -> {a1, a2}; b -> {b1}; a1 -> {a1x}: three levels below the root."""
    def directory(tag: str, children: dict[str, Any]) -> tuple[Any, bytes]:
        content = blob(40)
        env.upload(content)
        d = re_pb2.Directory()
        d.files.add(name=f"{tag}.txt", digest=digest(content))
        for name in sorted(children):
            d.directories.add(name=name, digest=children[name])
        return d, d.SerializeToString()

    made: dict[str, Any] = {}

    def add(tag: str, children: dict[str, Any]) -> Any:
        d, data = directory(tag, children)
        (dg,) = env.upload(data)
        made[dg.hash] = d
        return dg

    a1x = add("a1x", {})
    a1 = add("a1", {"x": a1x})
    a2 = add("a2", {})
    b1 = add("b1", {})
    a = add("a", {"a1": a1, "a2": a2})
    b = add("b", {"b1": b1})
    root = add("root", {"a": a, "b": b})
    return UploadedTree(root, made)


def _get_tree(env: Env, root: Any, page_size: int = 0, page_token: str = "",
              instance: str = "main", token: str | None = None) -> list[Any]:
    return list(env.cas.GetTree(re_pb2.GetTreeRequest(
        instance_name=instance, root_digest=root, page_size=page_size, page_token=page_token),
        metadata=auth(token or env.admin), timeout=TIMEOUT))


def test_get_tree_pages_through_every_directory_once(env: Env) -> None:
    tree = _upload_tree(env)
    assert len(tree.directories) == 7
    whole = [d for r in _get_tree(env, tree.root) for d in r.directories]
    assert sorted(d.SerializeToString() for d in whole) == \
        sorted(d.SerializeToString() for d in tree.directories.values())
    assert whole[0] == tree.directories[tree.root.hash]  # the root comes first

    seen: list[Any] = []
    token, calls = "", 0
    while True:
        calls += 1
        assert calls <= 20, "GetTree paging does not terminate"
        replies = _get_tree(env, tree.root, page_size=1, page_token=token)
        page = [d for r in replies for d in r.directories]
        assert len(page) <= 1
        seen.extend(page)
        token = replies[-1].next_page_token
        if not token:
            break
    hashes = [hashlib.sha256(d.SerializeToString()).hexdigest() for d in seen]
    assert len(hashes) == len(set(hashes)) == 7
    assert set(hashes) == set(tree.directories)

    # Pages of three: 3 + 3 + 1.
    sizes, token = [], ""
    while True:
        replies = _get_tree(env, tree.root, page_size=3, page_token=token)
        sizes.append(sum(len(r.directories) for r in replies))
        token = replies[-1].next_page_token
        if not token or len(sizes) > 5:
            break
    assert sizes == [3, 3, 1]


def test_get_tree_skips_missing_subtrees(env: Env) -> None:
    gone = re_pb2.Directory()
    gone.files.add(name="never-uploaded", digest=random_digest())
    root = re_pb2.Directory()
    root.directories.add(name="gone", digest=digest(gone.SerializeToString()))
    (r,) = env.upload(root.SerializeToString())
    dirs = [d for reply in _get_tree(env, r) for d in reply.directories]
    assert dirs == [root]


@pytest.mark.parametrize("page_token", ["abc", "1.5", "0x10"])
def test_get_tree_invalid_page_token(env: Env, page_token: str) -> None:
    tree = _upload_tree(env)
    err = rpc_error(env.cas.GetTree, re_pb2.GetTreeRequest(
        instance_name="main", root_digest=tree.root, page_token=page_token),
        metadata=auth(env.admin))
    assert err.code() == S.INVALID_ARGUMENT


def test_get_tree_negative_page_token_is_invalid(env: Env) -> None:
    d = re_pb2.Directory()
    d.files.add(name="f", digest=random_digest())
    (root,) = env.upload(d.SerializeToString())
    try:
        replies = _get_tree(env, root, page_size=1, page_token="-1")
    except grpc.RpcError as e:
        assert e.code() == S.INVALID_ARGUMENT, e
    else:
        pytest.fail(f"answered {sum(len(r.directories) for r in replies)} directories and "
                    f"next_page_token {replies[-1].next_page_token!r}")


def test_get_tree_missing_root_is_not_found(env: Env) -> None:
    err = rpc_error(env.cas.GetTree, re_pb2.GetTreeRequest(
        instance_name="main", root_digest=random_digest()), metadata=auth(env.admin))
    assert err.code() == S.NOT_FOUND


def test_get_tree_malformed_root_digest_is_invalid(env: Env) -> None:
    err = rpc_error(env.cas.GetTree, re_pb2.GetTreeRequest(
        instance_name="main", root_digest=re_pb2.Digest(hash="nothex", size_bytes=1)),
        metadata=auth(env.admin))
    assert err.code() == S.INVALID_ARGUMENT


def test_get_tree_root_that_is_not_a_directory(env: Env) -> None:
    (root,) = env.upload(b"\xff\xff\xff not a Directory " + os.urandom(8))
    err = rpc_error(env.cas.GetTree, re_pb2.GetTreeRequest(
        instance_name="main", root_digest=root), metadata=auth(env.admin))
    assert err.code() in (S.INVALID_ARGUMENT, S.FAILED_PRECONDITION), err.details()


# ---------------------------------------------------------------- ByteStream


def test_bytestream_write_then_read_3mib_in_64kib_messages(env: Env) -> None:
    data = blob(3 * MiB)
    d = digest(data)
    files = env.cas_files()
    sent = 0

    def counted() -> Iterator[Any]:
        nonlocal sent
        for req in write_requests(write_name(d), data, chunk=64 * KiB):
            assert len(req.data) <= 64 * KiB
            sent += 1
            yield req

    reply = env.bs.Write(counted(), metadata=auth(env.pusher), timeout=TIMEOUT)
    assert reply.committed_size == len(data)
    assert sent == 48
    assert env.cas_files() - files == {d.hash}
    messages = list(env.bs.Read(bs_pb2.ReadRequest(resource_name=read_name(d)),
                                timeout=TIMEOUT))
    assert all(len(m.data) <= 4 * MiB for m in messages)
    assert b"".join(m.data for m in messages) == data
    assert env.read(d, instance="") == data  # no instance prefix: the main cache
    qws = env.bs.QueryWriteStatus(bs_pb2.QueryWriteStatusRequest(
        resource_name=write_name(d)), metadata=auth(env.pusher), timeout=TIMEOUT)
    assert (qws.committed_size, qws.complete) == (len(data), True)


@pytest.mark.parametrize(("offset", "limit"), [
    (0, 0), (0, 1), (1, 0), (1000, 5000), (2 * MiB - 3, 10), (3 * MiB - 1, 0),
    (3 * MiB - 1, 100), (3 * MiB, 0), (5, 3 * MiB + 100), (MiB + 7, 2 * MiB)])
def test_bytestream_read_offset_and_limit(env: Env, offset: int, limit: int,
                                          big_blob: tuple[Any, bytes]) -> None:
    d, data = big_blob
    got = env.read(d, read_offset=offset, read_limit=limit)
    end = offset + limit if limit else len(data)
    assert got == data[offset:end]


@pytest.fixture(scope="module")
def big_blob(env: Env) -> tuple[Any, bytes]:
    data = blob(3 * MiB)
    d = digest(data)
    reply = env.bs.Write(write_requests(write_name(d), data), metadata=auth(env.admin),
                         timeout=TIMEOUT)
    assert reply.committed_size == len(data)
    return d, data


def test_bytestream_read_negative_limit_is_refused(env: Env,
                                                   big_blob: tuple[Any, bytes]) -> None:
    d, _ = big_blob
    err = rpc_error(env.bs.Read, bs_pb2.ReadRequest(resource_name=read_name(d),
                                                    read_limit=-1))
    assert err.code() in (S.INVALID_ARGUMENT, S.OUT_OF_RANGE)


@pytest.mark.parametrize("offset", [-1, 3 * MiB + 1])
def test_bytestream_read_offset_out_of_range(env: Env, big_blob: tuple[Any, bytes],
                                             offset: int) -> None:
    d, _ = big_blob
    err = rpc_error(env.bs.Read, bs_pb2.ReadRequest(resource_name=read_name(d),
                                                    read_offset=offset))
    assert err.code() == S.OUT_OF_RANGE, err.details()


def test_bytestream_read_missing_blob_is_not_found(env: Env,
                                                   big_blob: tuple[Any, bytes]) -> None:
    err = rpc_error(env.bs.Read, bs_pb2.ReadRequest(resource_name=read_name(random_digest())))
    assert err.code() == S.NOT_FOUND
    d, _ = big_blob
    wrong = re_pb2.Digest(hash=d.hash, size_bytes=d.size_bytes - 1)
    err = rpc_error(env.bs.Read, bs_pb2.ReadRequest(resource_name=read_name(wrong)))
    assert err.code() == S.NOT_FOUND
    # The empty blob always exists.
    assert env.read(re_pb2.Digest(hash=EMPTY_HASH, size_bytes=0)) == b""


def test_bytestream_compressed_write_and_read(env: Env) -> None:
    data = blob(1 * MiB + 12345, compressible=True)
    d = digest(data)
    packed = zstandard.ZstdCompressor(level=3).compress(data)
    assert len(packed) < len(data) // 4
    files = env.cas_files()
    reply = env.bs.Write(write_requests(write_name(d, compressor="zstd"), packed, chunk=4 * KiB),
                         metadata=auth(env.pusher), timeout=TIMEOUT)
    assert reply.committed_size == len(packed)
    assert env.cas_files() - files == {d.hash}
    assert env.read(d) == data  # stored as the plain blob
    compressed, _ = env.read_zstd(d)
    assert len(compressed) < len(data) // 4
    assert unzstd(compressed) == data
    # An identity upload is readable compressed.
    plain = blob(300_000, compressible=True)
    pd = digest(plain)
    env.bs.Write(write_requests(write_name(pd), plain), metadata=auth(env.pusher),
                 timeout=TIMEOUT)
    assert unzstd(env.read_zstd(pd)[0]) == plain


@pytest.mark.parametrize("size", [0, 3000])
def test_compressed_read_stream_ends(env: Env, size: int) -> None:
    data = blob(size, compressible=True)
    if data:
        env.upload(data)
    d = digest(data)
    started = time.monotonic()
    received, extra = env.read_zstd(d, token="")
    assert unzstd(received) == data
    assert time.monotonic() - started < 5
    assert extra == 0, f"{extra}+ messages after the complete blob"


def test_bytestream_compressed_write_in_many_zstd_frames(env: Env) -> None:
    data = blob(200_000, compressible=True)
    d = digest(data)
    frames = b"".join(zstd(data[i:i + 50_000]) for i in range(0, len(data), 50_000))
    env.bs.Write(write_requests(write_name(d, compressor="zstd"), frames),
                 metadata=auth(env.pusher), timeout=TIMEOUT)
    assert env.read(d) == data


def test_bytestream_compressed_write_of_wrong_content_is_refused(env: Env) -> None:
    data = blob(100_000, compressible=True)
    d = digest(data)
    files = env.cas_files()
    for body in (zstd(data[:-1]), zstd(data + b"x"), b"not zstd at all" * 100):
        err = rpc_error(env.bs.Write, write_requests(write_name(d, compressor="zstd"), body),
                        metadata=auth(env.pusher))
        assert err.code() == S.INVALID_ARGUMENT, err.details()
    assert env.cas_files() == files
    assert not env.stored(d)


def test_write_of_existing_blob_returns_early(env: Env) -> None:
    data = blob(200_000)
    (d,) = env.upload(data)

    def first_message_only(name: str) -> Iterator[Any]:
        # No finish_write: only an early answer lets this call succeed.
        yield bs_pb2.WriteRequest(resource_name=name, write_offset=0, data=data[:1000])

    reply = env.bs.Write(first_message_only(write_name(d)), metadata=auth(env.pusher),
                         timeout=TIMEOUT)
    assert reply.committed_size == len(data)
    reply = env.bs.Write(first_message_only(write_name(d, compressor="zstd")),
                         metadata=auth(env.pusher), timeout=TIMEOUT)
    assert reply.committed_size == -1
    empty = re_pb2.Digest(hash=EMPTY_HASH, size_bytes=0)
    reply = env.bs.Write(write_requests(write_name(empty), b""), metadata=auth(env.pusher),
                         timeout=TIMEOUT)
    assert reply.committed_size == 0


def _query(env: Env, name: str, token: str | None = None) -> Any:
    return env.bs.QueryWriteStatus(bs_pb2.QueryWriteStatusRequest(resource_name=name),
                                   metadata=auth(token or env.pusher), timeout=TIMEOUT)


def test_resumable_write_after_stream_ends_without_finish(env: Env) -> None:
    data = blob(600_000)
    d = digest(data)
    half = len(data) // 2
    name = write_name(d)
    err = rpc_error(env.bs.Write, write_requests(name, data[:half], finish=False),
                    metadata=auth(env.pusher))
    assert err.code() == S.INVALID_ARGUMENT
    assert "ended without finish_write" in (err.details() or "")
    _resume_and_finish(env, name, data, half)


def _resume_and_finish(env: Env, name: str, data: bytes, half: int) -> None:
    """The server kept the first half; a new Write from there completes the blob."""
    d = digest(data)
    status = _query(env, name)
    assert (status.committed_size, status.complete) == (half, False)
    assert not env.stored(d)
    reply = env.bs.Write(write_requests(name, data[half:], offset=half),
                         metadata=auth(env.pusher), timeout=TIMEOUT)
    assert reply.committed_size == len(data)
    status = _query(env, name)
    assert (status.committed_size, status.complete) == (len(data), True)
    assert env.read(d) == data


def test_resumable_write_after_client_cancels(env: Env) -> None:
    # Whole 64 KiB messages, so each reaches the spool file unbuffered and QueryWriteStatus
    # can tell when the server has all of the first half.
    half = 4 * 64 * KiB
    data = blob(2 * half)
    d = digest(data)
    name = write_name(d)
    release = threading.Event()

    def then_hang() -> Iterator[Any]:
        yield from write_requests(name, data[:half], finish=False)
        release.wait(TIMEOUT)

    def committed() -> int:
        try:
            return int(_query(env, name).committed_size)
        except grpc.RpcError as e:
            assert e.code() == S.NOT_FOUND
            return 0

    future = env.bs.Write.future(then_hang(), metadata=auth(env.pusher), timeout=TIMEOUT)
    try:
        deadline = time.monotonic() + 10
        while committed() < half and time.monotonic() < deadline:
            time.sleep(0.02)
        assert committed() == half
        assert not _query(env, name).complete
    finally:
        future.cancel()
        release.set()
    with pytest.raises(grpc.FutureCancelledError):
        future.result()
    _resume_and_finish(env, name, data, half)


def test_query_write_status_of_unknown_upload_is_not_found(env: Env) -> None:
    err = rpc_error(env.bs.QueryWriteStatus, bs_pb2.QueryWriteStatusRequest(
        resource_name=write_name(random_digest())), metadata=auth(env.pusher))
    assert err.code() == S.NOT_FOUND


def test_write_with_wrong_offset_is_invalid_argument(env: Env) -> None:
    data = blob(300_000)
    d = digest(data)
    files = env.cas_files()
    # A fresh upload cannot start mid-blob.
    err = rpc_error(env.bs.Write, write_requests(write_name(d), data[100:], offset=100),
                    metadata=auth(env.pusher))
    assert err.code() == S.INVALID_ARGUMENT, err.details()

    # A later message must continue where the previous one ended.
    def gap() -> Iterator[Any]:
        name = write_name(d)
        yield bs_pb2.WriteRequest(resource_name=name, write_offset=0, data=data[:1000])
        yield bs_pb2.WriteRequest(write_offset=2000, data=data[2000:], finish_write=True)

    err = rpc_error(env.bs.Write, gap(), metadata=auth(env.pusher))
    assert err.code() == S.INVALID_ARGUMENT, err.details()

    # Resuming past what was received is refused too.
    name = write_name(d)
    rpc_error(env.bs.Write, write_requests(name, data[:1000], finish=False),
              metadata=auth(env.pusher))
    err = rpc_error(env.bs.Write, write_requests(name, data[5000:], offset=5000),
                    metadata=auth(env.pusher))
    assert err.code() == S.INVALID_ARGUMENT, err.details()
    assert env.cas_files() == files
    assert not env.stored(d)


@pytest.mark.parametrize("how", ["mismatch", "short", "long"])
def test_write_digest_mismatch_is_invalid_and_not_stored(env: Env, how: str) -> None:
    data = blob(200_000)
    d = digest(data)
    body = {"mismatch": data[:-1] + bytes([data[-1] ^ 1]), "short": data[:-10],
            "long": data + b"extra"}[how]
    name = write_name(d)
    files = env.cas_files()
    err = rpc_error(env.bs.Write, write_requests(name, body), metadata=auth(env.pusher))
    assert err.code() == S.INVALID_ARGUMENT, err.details()
    err = rpc_error(env.bs.Read, bs_pb2.ReadRequest(resource_name=read_name(d)))
    assert err.code() == S.NOT_FOUND
    assert env.cas_files() == files
    assert not env.stored(d)
    assert not env.stored(digest(body))


GOOD = digest(b"resource name tests")
BAD_WRITE_NAMES = {
    "no-uploads": f"main/blobs/{GOOD.hash}/{GOOD.size_bytes}",
    "no-uuid": f"main/uploads/blobs/{GOOD.hash}/{GOOD.size_bytes}",
    "bad-uuid": f"main/uploads/not_a*uuid/blobs/{GOOD.hash}/{GOOD.size_bytes}",
    "no-size": f"main/uploads/u1/blobs/{GOOD.hash}",
    "bad-hash": f"main/uploads/u1/blobs/{GOOD.hash.upper()}/{GOOD.size_bytes}",
    "short-hash": f"main/uploads/u1/blobs/{GOOD.hash[:-1]}/{GOOD.size_bytes}",
    "non-numeric-size": f"main/uploads/u1/blobs/{GOOD.hash}/12a",
    "negative-size": f"main/uploads/u1/blobs/{GOOD.hash}/-1",
    "gzip": f"main/uploads/u1/compressed-blobs/gzip/{GOOD.hash}/{GOOD.size_bytes}",
    "compressor-missing": f"main/uploads/u1/compressed-blobs/{GOOD.hash}/{GOOD.size_bytes}",
    "bad-instance": f"Main/uploads/u1/blobs/{GOOD.hash}/{GOOD.size_bytes}",
    "empty": "",
}
BAD_READ_NAMES = {
    "no-size": f"main/blobs/{GOOD.hash}",
    "extra-part": f"main/blobs/{GOOD.hash}/{GOOD.size_bytes}/extra",
    "bad-hash": f"main/blobs/{'x' * 64}/{GOOD.size_bytes}",
    "non-numeric-size": f"main/blobs/{GOOD.hash}/ten",
    "gzip": f"main/compressed-blobs/gzip/{GOOD.hash}/{GOOD.size_bytes}",
    "no-blobs": f"main/{GOOD.hash}/{GOOD.size_bytes}",
    "bad-instance": f"a/b/blobs/{GOOD.hash}/{GOOD.size_bytes}",
    "empty": "",
}


@pytest.mark.parametrize("name", list(BAD_WRITE_NAMES.values()), ids=list(BAD_WRITE_NAMES))
def test_malformed_write_resource_name_is_invalid(env: Env, name: str) -> None:
    files = env.cas_files()
    err = rpc_error(env.bs.Write, write_requests(name, b"resource name tests"),
                    metadata=auth(env.admin))
    assert err.code() == S.INVALID_ARGUMENT, err.details()
    err = rpc_error(env.bs.QueryWriteStatus, bs_pb2.QueryWriteStatusRequest(
        resource_name=name), metadata=auth(env.admin))
    assert err.code() == S.INVALID_ARGUMENT, err.details()
    assert env.cas_files() == files
    assert not env.stored(GOOD)


@pytest.mark.parametrize("name", list(BAD_READ_NAMES.values()), ids=list(BAD_READ_NAMES))
def test_malformed_read_resource_name_is_invalid(env: Env, name: str) -> None:
    err = rpc_error(env.bs.Read, bs_pb2.ReadRequest(resource_name=name),
                    metadata=auth(env.admin))
    assert err.code() == S.INVALID_ARGUMENT, err.details()


def test_empty_write_stream_is_invalid(env: Env) -> None:
    err = rpc_error(env.bs.Write, iter(()), metadata=auth(env.admin))
    assert err.code() == S.INVALID_ARGUMENT


@pytest.mark.parametrize(("instance", "who", "code"), [
    ("main", "reader", S.PERMISSION_DENIED), ("main", None, S.UNAUTHENTICATED),
    ("main", "alpha", S.PERMISSION_DENIED), ("alpha", "reader", S.PERMISSION_DENIED)])
@pytest.mark.parametrize("compressor", [None, "zstd"])
def test_bytestream_write_without_push_right_is_refused(env: Env, instance: str,
                                                        who: str | None, code: grpc.StatusCode,
                                                        compressor: str | None) -> None:
    token = {"reader": env.reader, "alpha": env.alpha_pusher, None: None}[who]
    data = blob(100_000)
    d = digest(data)
    body = zstd(data) if compressor else data
    name = write_name(d, instance, compressor)
    files = env.cas_files()
    err = rpc_error(env.bs.Write, write_requests(name, body), metadata=auth(token))
    assert err.code() == code, err.details()
    err = rpc_error(env.bs.QueryWriteStatus, bs_pb2.QueryWriteStatusRequest(
        resource_name=name), metadata=auth(token))
    assert err.code() == code, err.details()
    assert env.cas_files() == files
    assert not env.stored(d)
    spool = env.srv.data_dir / "tmp" / ("bs-" + hashlib.sha256(name.encode()).hexdigest())
    assert not spool.exists()


def test_bytestream_read_needs_read_right_on_private_cache(env: Env,
                                                           big_blob: tuple[Any, bytes]) -> None:
    d, data = big_blob
    for token, code in ((None, S.UNAUTHENTICATED), (env.beta_pusher, S.PERMISSION_DENIED)):
        err = rpc_error(env.bs.Read, bs_pb2.ReadRequest(resource_name=read_name(d, "alpha")),
                        metadata=auth(token))
        assert err.code() == code
    # Stored once, for main; alpha holds it only once it is written there. The admin may
    # read main, which proves possession, so the write ends before any bytes are sent.
    err = rpc_error(env.bs.Read, bs_pb2.ReadRequest(resource_name=read_name(d, "alpha")),
                    metadata=auth(env.reader))
    assert err.code() == S.NOT_FOUND
    reply = env.bs.Write(iter([bs_pb2.WriteRequest(resource_name=write_name(d, "alpha"))]),
                         metadata=auth(env.admin), timeout=TIMEOUT)
    assert reply.committed_size == len(data)
    assert env.read(d, "alpha", token=env.reader, read_limit=10) == data[:10]


# ---------------------------------------------------------------- nothing crashes


RAW_METHODS = [
    ("unary_unary", "/build.bazel.remote.execution.v2.ActionCache/GetActionResult"),
    ("unary_unary", "/build.bazel.remote.execution.v2.ActionCache/UpdateActionResult"),
    ("unary_unary", "/build.bazel.remote.execution.v2.Capabilities/GetCapabilities"),
    ("unary_unary",
     "/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchUpdateBlobs"),
    ("unary_stream", "/build.bazel.remote.execution.v2.ContentAddressableStorage/GetTree"),
    ("unary_stream", "/google.bytestream.ByteStream/Read"),
    ("stream_unary", "/google.bytestream.ByteStream/Write"),
]


def _raw_call(env: Env, kind: str, method: str, payload: bytes) -> grpc.RpcError:
    factory = getattr(env.channel, kind)
    call = factory(method, request_serializer=None, response_deserializer=None)
    arg: Any = iter([payload]) if kind == "stream_unary" else payload
    started = time.monotonic()
    err = rpc_error(call, arg, metadata=auth(env.admin), timeout=10)
    assert time.monotonic() - started < 9, "the call hung until its deadline"
    return err


@pytest.mark.parametrize(("kind", "method"), RAW_METHODS, ids=[m for _, m in RAW_METHODS])
def test_garbage_request_bytes_fail_fast_and_server_survives(env: Env, kind: str,
                                                             method: str) -> None:
    err = _raw_call(env, kind, method, b"\xff\xff")
    assert err.code() == S.INVALID_ARGUMENT, err
    assert "could not be decoded" in (err.details() or "")
    env.cap.GetCapabilities(re_pb2.GetCapabilitiesRequest(instance_name="main"),
                            timeout=TIMEOUT)
    assert env.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT
                            ).status == health_pb2.HealthCheckResponse.SERVING


def test_unknown_method_is_unimplemented(env: Env) -> None:
    err = _raw_call(env, "unary_unary",
                    "/build.bazel.remote.execution.v2.Execution/Execute", b"")
    assert err.code() == S.UNIMPLEMENTED


def _lose_from_disk(env: Env) -> Any:
    """A blob the metadata lists whose file is gone (a crash, a wiped volume)."""
    (d,) = env.upload(blob(5000))
    path = env.srv.data_dir / "blobs" / "cas" / d.hash[:2] / d.hash
    assert path.is_file()
    path.unlink()
    return d


def test_blob_lost_from_disk_is_not_found_in_batch_read(env: Env) -> None:
    d = _lose_from_disk(env)
    reply = env.cas.BatchReadBlobs(re_pb2.BatchReadBlobsRequest(
        instance_name="main", digests=[d]), timeout=TIMEOUT)
    assert reply.responses[0].status.code == S.NOT_FOUND.value[0]


def test_blob_lost_from_disk_is_not_found_in_bytestream_read(env: Env) -> None:
    d = _lose_from_disk(env)
    err = rpc_error(env.bs.Read, bs_pb2.ReadRequest(resource_name=read_name(d)))
    assert err.code() == S.NOT_FOUND, err


# ---------------------------------------------------------------- size bound


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    srv = FlywheelServer(tmp_path_factory.mktemp("grpc-small") / "data",
                         extra_args=["--bazel-max-size", "1MiB"]).start()
    channel = None
    try:
        channel = _connect(srv)
        admin = srv.admin_token
        yield Env(srv, channel, admin, admin, admin, admin, admin)
    finally:
        if channel is not None:
            channel.close()
        srv.stop()


@pytest.mark.parametrize("compressor", [None, "zstd"])
def test_oversized_bytestream_write_is_resource_exhausted(small: Env,
                                                          compressor: str | None) -> None:
    data = blob(2 * MiB, compressible=compressor is not None)
    d = digest(data)
    body = zstd(data) if compressor else data
    files = small.cas_files()
    err = rpc_error(small.bs.Write, write_requests(write_name(d, compressor=compressor), body),
                    metadata=auth(small.admin))
    assert err.code() == S.RESOURCE_EXHAUSTED, err.details()
    assert small.cas_files() == files
    assert not small.stored(d)
    caps = small.cap.GetCapabilities(re_pb2.GetCapabilitiesRequest(instance_name="main"),
                                     timeout=TIMEOUT)
    assert caps.cache_capabilities.digest_functions
    # Still serving: a blob that fits goes in and out.
    fits = blob(100 * KiB)
    small.bs.Write(write_requests(write_name(digest(fits)), fits), metadata=auth(small.admin),
                   timeout=TIMEOUT)
    assert small.read(digest(fits)) == fits


def test_oversized_batch_entry_is_resource_exhausted_in_its_status(small: Env) -> None:
    big, ok = blob(MiB + 1), blob(1000)
    reply = small.cas.BatchUpdateBlobs(re_pb2.BatchUpdateBlobsRequest(
        instance_name="main", requests=[
            re_pb2.BatchUpdateBlobsRequest.Request(digest=digest(b), data=b) for b in (big, ok)]),
        metadata=auth(small.admin), timeout=TIMEOUT)
    assert [r.status.code for r in reply.responses] == [S.RESOURCE_EXHAUSTED.value[0], 0]
    assert small.missing(digest(big), digest(ok)) == [(digest(big).hash, MiB + 1)]


def test_oversized_action_result_is_resource_exhausted(small: Env) -> None:
    action = random_digest()
    err = rpc_error(small.ac.UpdateActionResult, re_pb2.UpdateActionResultRequest(
        instance_name="main", action_digest=action,
        action_result=re_pb2.ActionResult(stdout_raw=blob(MiB + 10))),
        metadata=auth(small.admin))
    assert err.code() == S.RESOURCE_EXHAUSTED, err.details()
    assert small.ac_missing(action)


def test_size_bound_evicts_to_make_room(small: Env) -> None:
    blobs = [blob(300 * KiB) for _ in range(6)]
    for b in blobs:
        small.bs.Write(write_requests(write_name(digest(b)), b), metadata=auth(small.admin),
                       timeout=TIMEOUT)
    # 1.8 MiB written into 1 MiB: the oldest were evicted, the newest is there.
    assert small.stored(digest(blobs[-1]))
    assert len(small.missing(*[digest(b) for b in blobs])) >= 3
    total = sum(p.stat().st_size for p in (small.srv.data_dir / "blobs").rglob("*")
                if p.is_file())
    assert total <= MiB

"""Our REAPI/ByteStream protos: names, numbers, wire bytes and gRPC method paths.

The expected values are the published spec's (bazelbuild/remote-apis, googleapis); the wire
bytes are worked out by hand from the protobuf encoding, so a renumbered or retyped field
fails here rather than at a Bazel client.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor

from flywheel.bazel.reapi import bs_pb2, re_pb2, semver_pb2, status_pb2
from flywheel.bazel.reapi_grpc import bs_grpc, re_grpc

SRC = Path(__file__).resolve().parents[3] / "src"
PROTOS = SRC / "flywheel" / "bazel" / "protos"

T = FieldDescriptor
STRING, BYTES, BOOL = T.TYPE_STRING, T.TYPE_BYTES, T.TYPE_BOOL
INT32, INT64, UINT32, UINT64 = T.TYPE_INT32, T.TYPE_INT64, T.TYPE_UINT32, T.TYPE_UINT64
MSG, ENUM = T.TYPE_MESSAGE, T.TYPE_ENUM

RE = "build.bazel.remote.execution.v2"


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------

def test_proto_packages_and_files() -> None:
    assert re_pb2.DESCRIPTOR.package == RE
    assert re_pb2.DESCRIPTOR.name == "build/bazel/remote/execution/v2/remote_execution.proto"
    assert semver_pb2.DESCRIPTOR.package == "build.bazel.semver"
    assert bs_pb2.DESCRIPTOR.package == "google.bytestream"
    assert status_pb2.DESCRIPTOR.package == "google.rpc"
    for name in ("build/bazel/remote/execution/v2/remote_execution.proto",
                 "build/bazel/semver/semver.proto", "google/bytestream/bytestream.proto",
                 "google/rpc/status.proto"):
        assert (PROTOS / name).is_file(), name
    # no longrunning / http annotations dragged in
    deps = {d.name for d in re_pb2.DESCRIPTOR.dependencies}
    assert deps == {"build/bazel/semver/semver.proto", "google/protobuf/any.proto",
                    "google/protobuf/duration.proto", "google/protobuf/timestamp.proto",
                    "google/protobuf/wrappers.proto", "google/rpc/status.proto"}
    assert not bs_pb2.DESCRIPTOR.dependencies


def test_proto_files_are_not_git_ignored() -> None:
    # A fresh clone must contain them: a bare "build/" rule in .gitignore also matches
    # protos/build/ unless that directory is re-included.
    repo = SRC.parent
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    protos = [str(p.relative_to(repo)) for p in PROTOS.rglob("*.proto")]
    assert len(protos) == 4
    proc = subprocess.run(["git", "check-ignore", "--no-index", *protos], cwd=repo,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.stdout.split() == [], f"git-ignored: {proc.stdout.split()}"


def test_messages_cost_no_grpc_and_no_compiler() -> None:
    # HTTP workers read ActionResults: they must not pay for grpc or a proto compiler.
    proc = subprocess.run(
        [sys.executable, "-c",
         "import sys, flywheel.bazel.reapi, flywheel.server.app; "
         "print(sorted(m for m in sys.modules if m.split('.')[0] in "
         "('grpc', 'grpc_tools', 'grpc_health')))"],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_import_is_warning_free_in_a_fresh_interpreter() -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c",
         "import sys, flywheel.bazel.reapi as r; "
         "assert not [m for m in sys.modules if m.startswith('buildgrid')]; "
         "print(r.re_pb2.Digest(hash='ab', size_bytes=3).SerializeToString())"],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == repr(b"\n\x02ab\x10\x03")


@pytest.mark.parametrize("first", ["build", "flywheel.bazel.reapi"])
def test_unrelated_top_level_build_package_does_not_break_loading(
        tmp_path: Path, first: str) -> None:
    # pypa/build is a regular package named 'build'; it must neither hide our protos nor be
    # replaced by them, whichever is imported first.
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "__init__.py").write_text("MARKER = 'pypa'\n")
    second = "flywheel.bazel.reapi" if first == "build" else "build"
    code = (f"import importlib, sys; importlib.import_module({first!r}); "
            f"importlib.import_module({second!r}); "
            "import build, flywheel.bazel.reapi as r, flywheel.bazel.reapi_grpc as g; "
            "assert build.MARKER == 'pypa'; "
            "assert r.re_pb2.Compressor.ZSTD == 1; "
            "assert g.re_grpc.ActionCacheStub; print('ok')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(SRC)])}
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True,
                          text=True, timeout=120, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_buildgrid_is_not_imported_under_src() -> None:
    pattern = re.compile(r"^\s*(from|import)\s+buildgrid\b", re.MULTILINE)
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


# ---------------------------------------------------------------------------
# Enums
# ---------------------------------------------------------------------------

def _enum(enum_type: Any) -> dict[str, int]:
    return {v.name: v.number for v in enum_type.DESCRIPTOR.values}


def test_enum_values() -> None:
    assert re_pb2.Compressor.ZSTD == 1
    assert re_pb2.DigestFunction.SHA256 == 1
    assert _enum(re_pb2.Compressor.Value) == {
        "IDENTITY": 0, "ZSTD": 1, "DEFLATE": 2, "BROTLI": 3}
    assert _enum(re_pb2.DigestFunction.Value) == {
        "UNKNOWN": 0, "SHA256": 1, "SHA1": 2, "MD5": 3, "VSO": 4, "SHA384": 5, "SHA512": 6,
        "MURMUR3": 7, "SHA256TREE": 8, "BLAKE3": 9, "GITSHA1": 10}
    assert _enum(re_pb2.SymlinkAbsolutePathStrategy.Value) == {
        "UNKNOWN": 0, "DISALLOWED": 1, "ALLOWED": 2}
    assert _enum(re_pb2.Command.OutputDirectoryFormat) == {
        "TREE_ONLY": 0, "DIRECTORY_ONLY": 1, "TREE_AND_DIRECTORY": 2}
    assert _enum(re_pb2.ChunkingFunction.Value) == {
        "UNKNOWN": 0, "FAST_CDC_2020": 1, "REP_MAX_CDC": 2}


# ---------------------------------------------------------------------------
# Field numbers and types of what a cache server reads or writes
# ---------------------------------------------------------------------------

# message -> {field: (number, type, repeated?, referenced type or None)}
FIELDS: dict[str, dict[str, tuple[int, int, bool, str | None]]] = {
    "Digest": {"hash": (1, STRING, False, None), "size_bytes": (2, INT64, False, None)},
    "ActionResult": {
        "output_files": (2, MSG, True, "OutputFile"),
        "output_directories": (3, MSG, True, "OutputDirectory"),
        "exit_code": (4, INT32, False, None),
        "stdout_raw": (5, BYTES, False, None),
        "stdout_digest": (6, MSG, False, "Digest"),
        "stderr_raw": (7, BYTES, False, None),
        "stderr_digest": (8, MSG, False, "Digest"),
        "execution_metadata": (9, MSG, False, "ExecutedActionMetadata"),
        "output_file_symlinks": (10, MSG, True, "OutputSymlink"),
        "output_directory_symlinks": (11, MSG, True, "OutputSymlink"),
        "output_symlinks": (12, MSG, True, "OutputSymlink"),
    },
    "OutputFile": {
        "path": (1, STRING, False, None), "digest": (2, MSG, False, "Digest"),
        "is_executable": (4, BOOL, False, None), "contents": (5, BYTES, False, None),
        "node_properties": (7, MSG, False, "NodeProperties"),
    },
    "OutputDirectory": {
        "path": (1, STRING, False, None), "tree_digest": (3, MSG, False, "Digest"),
        "is_topologically_sorted": (4, BOOL, False, None),
        "root_directory_digest": (5, MSG, False, "Digest"),
    },
    "OutputSymlink": {
        "path": (1, STRING, False, None), "target": (2, STRING, False, None),
        "node_properties": (4, MSG, False, "NodeProperties"),
    },
    "Tree": {"root": (1, MSG, False, "Directory"), "children": (2, MSG, True, "Directory")},
    "Directory": {
        "files": (1, MSG, True, "FileNode"), "directories": (2, MSG, True, "DirectoryNode"),
        "symlinks": (3, MSG, True, "SymlinkNode"),
        "node_properties": (5, MSG, False, "NodeProperties"),
    },
    "FileNode": {
        "name": (1, STRING, False, None), "digest": (2, MSG, False, "Digest"),
        "is_executable": (4, BOOL, False, None),
        "node_properties": (6, MSG, False, "NodeProperties"),
    },
    "DirectoryNode": {"name": (1, STRING, False, None), "digest": (2, MSG, False, "Digest")},
    "SymlinkNode": {
        "name": (1, STRING, False, None), "target": (2, STRING, False, None),
        "node_properties": (4, MSG, False, "NodeProperties"),
    },
    "NodeProperties": {
        "properties": (1, MSG, True, "NodeProperty"),
        "mtime": (2, MSG, False, "google.protobuf.Timestamp"),
        "unix_mode": (3, MSG, False, "google.protobuf.UInt32Value"),
    },
    "ExecutedActionMetadata": {
        "worker": (1, STRING, False, None),
        "queued_timestamp": (2, MSG, False, "google.protobuf.Timestamp"),
        "output_upload_completed_timestamp": (10, MSG, False, "google.protobuf.Timestamp"),
        "auxiliary_metadata": (11, MSG, True, "google.protobuf.Any"),
        "virtual_execution_duration": (12, MSG, False, "google.protobuf.Duration"),
    },
    "GetActionResultRequest": {
        "instance_name": (1, STRING, False, None), "action_digest": (2, MSG, False, "Digest"),
        "inline_stdout": (3, BOOL, False, None), "inline_stderr": (4, BOOL, False, None),
        "inline_output_files": (5, STRING, True, None),
        "digest_function": (6, ENUM, False, "DigestFunction.Value"),
    },
    "UpdateActionResultRequest": {
        "instance_name": (1, STRING, False, None), "action_digest": (2, MSG, False, "Digest"),
        "action_result": (3, MSG, False, "ActionResult"),
        "results_cache_policy": (4, MSG, False, "ResultsCachePolicy"),
        "digest_function": (5, ENUM, False, "DigestFunction.Value"),
    },
    "FindMissingBlobsRequest": {
        "instance_name": (1, STRING, False, None), "blob_digests": (2, MSG, True, "Digest"),
        "digest_function": (3, ENUM, False, "DigestFunction.Value"),
    },
    "FindMissingBlobsResponse": {"missing_blob_digests": (2, MSG, True, "Digest")},
    "BatchUpdateBlobsRequest": {
        "instance_name": (1, STRING, False, None),
        "requests": (2, MSG, True, "BatchUpdateBlobsRequest.Request"),
        "digest_function": (5, ENUM, False, "DigestFunction.Value"),
    },
    "BatchUpdateBlobsRequest.Request": {
        "digest": (1, MSG, False, "Digest"), "data": (2, BYTES, False, None),
        "compressor": (3, ENUM, False, "Compressor.Value"),
    },
    "BatchUpdateBlobsResponse": {
        "responses": (1, MSG, True, "BatchUpdateBlobsResponse.Response")},
    "BatchUpdateBlobsResponse.Response": {
        "digest": (1, MSG, False, "Digest"), "status": (2, MSG, False, "google.rpc.Status"),
    },
    "BatchReadBlobsRequest": {
        "instance_name": (1, STRING, False, None), "digests": (2, MSG, True, "Digest"),
        "acceptable_compressors": (3, ENUM, True, "Compressor.Value"),
        "digest_function": (4, ENUM, False, "DigestFunction.Value"),
    },
    "BatchReadBlobsResponse": {
        "responses": (1, MSG, True, "BatchReadBlobsResponse.Response")},
    "BatchReadBlobsResponse.Response": {
        "digest": (1, MSG, False, "Digest"), "data": (2, BYTES, False, None),
        "status": (3, MSG, False, "google.rpc.Status"),
        "compressor": (4, ENUM, False, "Compressor.Value"),
    },
    "GetTreeRequest": {
        "instance_name": (1, STRING, False, None), "root_digest": (2, MSG, False, "Digest"),
        "page_size": (3, INT32, False, None), "page_token": (4, STRING, False, None),
        "digest_function": (5, ENUM, False, "DigestFunction.Value"),
    },
    "GetTreeResponse": {
        "directories": (1, MSG, True, "Directory"),
        "next_page_token": (2, STRING, False, None),
    },
    "GetCapabilitiesRequest": {"instance_name": (1, STRING, False, None)},
    "ServerCapabilities": {
        "cache_capabilities": (1, MSG, False, "CacheCapabilities"),
        "execution_capabilities": (2, MSG, False, "ExecutionCapabilities"),
        "deprecated_api_version": (3, MSG, False, "build.bazel.semver.SemVer"),
        "low_api_version": (4, MSG, False, "build.bazel.semver.SemVer"),
        "high_api_version": (5, MSG, False, "build.bazel.semver.SemVer"),
    },
    "CacheCapabilities": {
        "digest_functions": (1, ENUM, True, "DigestFunction.Value"),
        "action_cache_update_capabilities": (2, MSG, False, "ActionCacheUpdateCapabilities"),
        "cache_priority_capabilities": (3, MSG, False, "PriorityCapabilities"),
        "max_batch_total_size_bytes": (4, INT64, False, None),
        "symlink_absolute_path_strategy": (5, ENUM, False, "SymlinkAbsolutePathStrategy.Value"),
        "supported_compressors": (6, ENUM, True, "Compressor.Value"),
        "supported_batch_update_compressors": (7, ENUM, True, "Compressor.Value"),
        "max_cas_blob_size_bytes": (8, INT64, False, None),
        "split_blob_support": (9, BOOL, False, None),
        "splice_blob_support": (10, BOOL, False, None),
        "fast_cdc_2020_params": (11, MSG, False, "FastCdc2020Params"),
        "rep_max_cdc_params": (12, MSG, False, "RepMaxCdcParams"),
    },
    "FastCdc2020Params": {
        "avg_chunk_size_bytes": (1, UINT64, False, None), "seed": (2, UINT32, False, None)},
    "RepMaxCdcParams": {
        "min_chunk_size_bytes": (1, UINT64, False, None),
        "horizon_size_bytes": (2, UINT64, False, None),
    },
    "ExecutionCapabilities": {
        "digest_function": (1, ENUM, False, "DigestFunction.Value"),
        "exec_enabled": (2, BOOL, False, None),
        "execution_priority_capabilities": (3, MSG, False, "PriorityCapabilities"),
        "supported_node_properties": (4, STRING, True, None),
        "digest_functions": (5, ENUM, True, "DigestFunction.Value"),
    },
    "ActionCacheUpdateCapabilities": {"update_enabled": (1, BOOL, False, None)},
    "PriorityCapabilities": {
        "priorities": (1, MSG, True, "PriorityCapabilities.PriorityRange")},
    "PriorityCapabilities.PriorityRange": {
        "min_priority": (1, INT32, False, None), "max_priority": (2, INT32, False, None)},
    "ResultsCachePolicy": {"priority": (1, INT32, False, None)},
    "Action": {
        "command_digest": (1, MSG, False, "Digest"),
        "input_root_digest": (2, MSG, False, "Digest"),
        "timeout": (6, MSG, False, "google.protobuf.Duration"),
        "do_not_cache": (7, BOOL, False, None), "salt": (9, BYTES, False, None),
        "platform": (10, MSG, False, "Platform"),
    },
    "Platform.Property": {"name": (1, STRING, False, None), "value": (2, STRING, False, None)},
    "RequestMetadata": {
        "tool_details": (1, MSG, False, "ToolDetails"), "action_id": (2, STRING, False, None),
        "tool_invocation_id": (3, STRING, False, None),
        "correlated_invocations_id": (4, STRING, False, None),
        "action_mnemonic": (5, STRING, False, None), "target_id": (6, STRING, False, None),
        "configuration_id": (7, STRING, False, None),
    },
}

# Messages listed with every one of their fields (the rest list only a selection).
COMPLETE = set(FIELDS) - {"ExecutedActionMetadata", "Action"}


def _full(name: str) -> str:
    return name if name.startswith(("google.", "build.bazel.semver.")) else f"{RE}.{name}"


@pytest.mark.parametrize("message", sorted(FIELDS))
def test_field_numbers_and_types(message: str) -> None:
    desc = re_pb2.DESCRIPTOR.pool.FindMessageTypeByName(_full(message))
    for name, (number, ftype, repeated, ref) in FIELDS[message].items():
        f = desc.fields_by_name.get(name)
        assert f is not None, f"{message}.{name} missing"
        assert (f.number, f.type, f.is_repeated) == (number, ftype, repeated), f"{message}.{name}"
        ref_desc = f.message_type or f.enum_type
        assert (ref_desc.full_name if ref_desc else None) == (ref and _full(ref)), name
    if message in COMPLETE:
        assert set(desc.fields_by_name) == set(FIELDS[message]), message


def test_executed_action_metadata_and_action_numbering() -> None:
    m = re_pb2.ExecutedActionMetadata.DESCRIPTOR
    assert {f.name: f.number for f in m.fields if f.name.endswith("_timestamp")} == {
        "queued_timestamp": 2, "worker_start_timestamp": 3, "worker_completed_timestamp": 4,
        "input_fetch_start_timestamp": 5, "input_fetch_completed_timestamp": 6,
        "execution_start_timestamp": 7, "execution_completed_timestamp": 8,
        "output_upload_start_timestamp": 9, "output_upload_completed_timestamp": 10}
    assert len(m.fields) == 12
    assert {f.number for f in re_pb2.Action.DESCRIPTOR.fields} == {1, 2, 6, 7, 9, 10}
    assert {f.name: f.number for f in re_pb2.Command.DESCRIPTOR.fields} == {
        "arguments": 1, "environment_variables": 2, "output_files": 3,
        "output_directories": 4, "platform": 5, "working_directory": 6, "output_paths": 7,
        "output_node_properties": 8, "output_directory_format": 9}


def test_bytestream_semver_and_status_fields() -> None:
    def numbers(cls: Any) -> dict[str, int]:
        return {f.name: f.number for f in cls.DESCRIPTOR.fields}

    assert numbers(bs_pb2.ReadRequest) == {"resource_name": 1, "read_offset": 2,
                                           "read_limit": 3}
    assert numbers(bs_pb2.ReadResponse) == {"data": 10}
    assert numbers(bs_pb2.WriteRequest) == {"resource_name": 1, "write_offset": 2,
                                            "finish_write": 3, "data": 10}
    assert numbers(bs_pb2.WriteResponse) == {"committed_size": 1}
    assert numbers(bs_pb2.QueryWriteStatusRequest) == {"resource_name": 1}
    assert numbers(bs_pb2.QueryWriteStatusResponse) == {"committed_size": 1, "complete": 2}
    assert numbers(semver_pb2.SemVer) == {"major": 1, "minor": 2, "patch": 3, "prerelease": 4}
    assert numbers(status_pb2.Status) == {"code": 1, "message": 2, "details": 3}
    assert status_pb2.Status.DESCRIPTOR.fields_by_name["details"].message_type.full_name == \
        "google.protobuf.Any"


def test_reserved_numbers_are_reserved() -> None:
    from google.protobuf import descriptor_pb2

    fdp = descriptor_pb2.FileDescriptorProto()
    re_pb2.DESCRIPTOR.CopyToProto(fdp)
    reserved = {m.name: sorted(n for r in m.reserved_range for n in range(r.start, r.end))
                for m in fdp.message_type}
    assert reserved["ActionResult"] == [1]
    assert reserved["OutputFile"] == [3, 6]
    assert reserved["OutputDirectory"] == [2]
    assert reserved["OutputSymlink"] == [3]
    assert reserved["FileNode"] == [3, 5]
    assert reserved["SymlinkNode"] == [3]
    assert reserved["Directory"] == [4]
    assert reserved["Action"] == [3, 4, 5, 8]


# ---------------------------------------------------------------------------
# Wire bytes
# ---------------------------------------------------------------------------

def test_digest_wire_bytes() -> None:
    assert re_pb2.Digest(hash="ab", size_bytes=3).SerializeToString() == b"\n\x02ab\x10\x03"


def test_action_result_wire_bytes_and_round_trip() -> None:
    ar = re_pb2.ActionResult(
        output_files=[re_pb2.OutputFile(path="a", digest=re_pb2.Digest(hash="ab", size_bytes=3),
                                        is_executable=True)],
        output_directories=[re_pb2.OutputDirectory(
            path="d", tree_digest=re_pb2.Digest(hash="cd", size_bytes=4),
            is_topologically_sorted=True,
            root_directory_digest=re_pb2.Digest(hash="ef", size_bytes=5))],
        exit_code=1,
        stdout_digest=re_pb2.Digest(hash="00", size_bytes=0),
        output_symlinks=[re_pb2.OutputSymlink(path="l", target="t")],
        execution_metadata=re_pb2.ExecutedActionMetadata(worker="w"),
    )
    expected = (
        # output_files (2): path, digest, is_executable
        b"\x12\x0d" b"\n\x01a" b"\x12\x06\n\x02ab\x10\x03" b"\x20\x01"
        # output_directories (3): path, tree_digest, is_topologically_sorted,
        # root_directory_digest
        b"\x1a\x15" b"\n\x01d" b"\x1a\x06\n\x02cd\x10\x04" b"\x20\x01"
        b"\x2a\x06\n\x02ef\x10\x05"
        b"\x20\x01"                  # exit_code (4)
        b"\x32\x04\n\x0200"          # stdout_digest (6); size 0 is not encoded
        b"\x4a\x03\n\x01w"           # execution_metadata (9)
        b"\x62\x06\n\x01l\x12\x01t"  # output_symlinks (12)
    )
    data = ar.SerializeToString(deterministic=True)
    assert data == expected
    back = re_pb2.ActionResult.FromString(data)
    assert back == ar
    assert back.output_directories[0].root_directory_digest.hash == "ef"
    assert text_format.Parse(text_format.MessageToString(ar), re_pb2.ActionResult()) == ar


def test_server_capabilities_wire_bytes_and_round_trip() -> None:
    caps = re_pb2.ServerCapabilities(
        cache_capabilities=re_pb2.CacheCapabilities(
            digest_functions=[re_pb2.DigestFunction.SHA256],
            action_cache_update_capabilities=re_pb2.ActionCacheUpdateCapabilities(
                update_enabled=True),
            max_batch_total_size_bytes=4 << 20,
            symlink_absolute_path_strategy=re_pb2.SymlinkAbsolutePathStrategy.ALLOWED,
            supported_compressors=[re_pb2.Compressor.ZSTD],
            supported_batch_update_compressors=[re_pb2.Compressor.ZSTD,
                                                re_pb2.Compressor.DEFLATE],
            max_cas_blob_size_bytes=8,
            split_blob_support=True,
            fast_cdc_2020_params=re_pb2.FastCdc2020Params(avg_chunk_size_bytes=1, seed=2),
        ),
        low_api_version=semver_pb2.SemVer(major=2),
        high_api_version=semver_pb2.SemVer(major=2, minor=3),
    )
    cache = (
        b"\x0a\x01\x01"               # digest_functions (1), packed: SHA256
        b"\x12\x02\x08\x01"           # action_cache_update_capabilities (2)
        b"\x20\x80\x80\x80\x02"       # max_batch_total_size_bytes (4) = 4 MiB
        b"\x28\x02"                   # symlink_absolute_path_strategy (5) = ALLOWED
        b"\x32\x01\x01"               # supported_compressors (6), packed: ZSTD
        b"\x3a\x02\x01\x02"           # supported_batch_update_compressors (7): ZSTD, DEFLATE
        b"\x40\x08"                   # max_cas_blob_size_bytes (8)
        b"\x48\x01"                   # split_blob_support (9)
        b"\x5a\x04\x08\x01\x10\x02"   # fast_cdc_2020_params (11)
    )
    expected = (b"\x0a" + bytes([len(cache)]) + cache
                + b"\x22\x02\x08\x02"          # low_api_version (4)
                + b"\x2a\x04\x08\x02\x10\x03")  # high_api_version (5)
    data = caps.SerializeToString(deterministic=True)
    assert data == expected
    assert re_pb2.ServerCapabilities.FromString(data) == caps


def test_batch_messages_wire_bytes() -> None:
    req = re_pb2.BatchUpdateBlobsRequest(
        instance_name="i",
        requests=[re_pb2.BatchUpdateBlobsRequest.Request(
            digest=re_pb2.Digest(hash="ab", size_bytes=3), data=b"xyz",
            compressor=re_pb2.Compressor.ZSTD)],
        digest_function=re_pb2.DigestFunction.SHA256)
    assert req.SerializeToString() == (
        b"\n\x01i" b"\x12\x0f" b"\n\x06\n\x02ab\x10\x03" b"\x12\x03xyz" b"\x18\x01" b"\x28\x01")
    resp = re_pb2.BatchReadBlobsResponse(responses=[re_pb2.BatchReadBlobsResponse.Response(
        digest=re_pb2.Digest(hash="ab", size_bytes=3), data=b"z",
        status=status_pb2.Status(code=5, message="nf"), compressor=re_pb2.Compressor.ZSTD)])
    assert resp.SerializeToString(deterministic=True) == (
        b"\n\x15" b"\n\x06\n\x02ab\x10\x03" b"\x12\x01z" b"\x1a\x06\x08\x05\x12\x02nf"
        b"\x20\x01")
    read = re_pb2.BatchReadBlobsRequest(acceptable_compressors=[re_pb2.Compressor.ZSTD],
                                        digest_function=re_pb2.DigestFunction.SHA256)
    assert read.SerializeToString() == b"\x1a\x01\x01\x20\x01"


def test_bytestream_wire_bytes() -> None:
    w = bs_pb2.WriteRequest(resource_name="r", write_offset=2, finish_write=True, data=b"d")
    assert w.SerializeToString() == b"\n\x01r\x10\x02\x18\x01R\x01d"
    assert bs_pb2.ReadResponse(data=b"d").SerializeToString() == b"R\x01d"


# ---------------------------------------------------------------------------
# gRPC method paths, checked both on the descriptors and on a live server
# ---------------------------------------------------------------------------

METHODS = {
    f"/{RE}.ActionCache/GetActionResult": ("unary", "unary"),
    f"/{RE}.ActionCache/UpdateActionResult": ("unary", "unary"),
    f"/{RE}.ContentAddressableStorage/FindMissingBlobs": ("unary", "unary"),
    f"/{RE}.ContentAddressableStorage/BatchUpdateBlobs": ("unary", "unary"),
    f"/{RE}.ContentAddressableStorage/BatchReadBlobs": ("unary", "unary"),
    f"/{RE}.ContentAddressableStorage/GetTree": ("unary", "stream"),
    f"/{RE}.Capabilities/GetCapabilities": ("unary", "unary"),
    "/google.bytestream.ByteStream/Read": ("unary", "stream"),
    "/google.bytestream.ByteStream/Write": ("stream", "unary"),
    "/google.bytestream.ByteStream/QueryWriteStatus": ("unary", "unary"),
}


def test_method_paths_from_descriptors() -> None:
    found = {}
    for fd in (re_pb2.DESCRIPTOR, bs_pb2.DESCRIPTOR):
        for svc in fd.services_by_name.values():
            for m in svc.methods:
                found[f"/{svc.full_name}/{m.name}"] = (
                    "stream" if m.client_streaming else "unary",
                    "stream" if m.server_streaming else "unary")
    assert found == METHODS


class _AC(re_grpc.ActionCacheServicer):  # type: ignore[misc]
    def GetActionResult(self, request: Any, context: Any) -> Any:
        return re_pb2.ActionResult(exit_code=request.action_digest.size_bytes)

    def UpdateActionResult(self, request: Any, context: Any) -> Any:
        return request.action_result


class _CAS(re_grpc.ContentAddressableStorageServicer):  # type: ignore[misc]
    def FindMissingBlobs(self, request: Any, context: Any) -> Any:
        return re_pb2.FindMissingBlobsResponse(missing_blob_digests=request.blob_digests)

    def BatchUpdateBlobs(self, request: Any, context: Any) -> Any:
        return re_pb2.BatchUpdateBlobsResponse(responses=[
            re_pb2.BatchUpdateBlobsResponse.Response(digest=r.digest) for r in request.requests])

    def BatchReadBlobs(self, request: Any, context: Any) -> Any:
        return re_pb2.BatchReadBlobsResponse(responses=[
            re_pb2.BatchReadBlobsResponse.Response(digest=d) for d in request.digests])

    def GetTree(self, request: Any, context: Any) -> Iterator[Any]:
        for i in range(2):
            yield re_pb2.GetTreeResponse(next_page_token=str(i))


class _Caps(re_grpc.CapabilitiesServicer):  # type: ignore[misc]
    def GetCapabilities(self, request: Any, context: Any) -> Any:
        return re_pb2.ServerCapabilities(low_api_version=semver_pb2.SemVer(major=2))


class _BS(bs_grpc.ByteStreamServicer):  # type: ignore[misc]
    def Read(self, request: Any, context: Any) -> Iterator[Any]:
        yield bs_pb2.ReadResponse(data=request.resource_name.encode())

    def Write(self, request_iterator: Any, context: Any) -> Any:
        return bs_pb2.WriteResponse(committed_size=sum(len(r.data) for r in request_iterator))

    def QueryWriteStatus(self, request: Any, context: Any) -> Any:
        return bs_pb2.QueryWriteStatusResponse(committed_size=1, complete=True)


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    re_grpc.add_ActionCacheServicer_to_server(_AC(), server)
    re_grpc.add_ContentAddressableStorageServicer_to_server(_CAS(), server)
    re_grpc.add_CapabilitiesServicer_to_server(_Caps(), server)
    bs_grpc.add_ByteStreamServicer_to_server(_BS(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield ch
    finally:
        ch.close()
        server.stop(None)


def _raw(channel: grpc.Channel, path: str, request: bytes | list[bytes]) -> list[bytes]:
    """Call a method by its literal path with pre-serialized bytes."""
    kind = METHODS[path]
    ident: Any = None
    if kind == ("unary", "unary"):
        return [channel.unary_unary(path, ident, ident)(request, timeout=10)]
    if kind == ("unary", "stream"):
        return list(channel.unary_stream(path, ident, ident)(request, timeout=10))
    return [channel.stream_unary(path, ident, ident)(iter(request), timeout=10)]


def test_method_paths_served(channel: grpc.Channel) -> None:
    d = re_pb2.Digest(hash="ab", size_bytes=3)
    cases: dict[str, tuple[Any, Any]] = {
        f"/{RE}.ActionCache/GetActionResult":
            (re_pb2.GetActionResultRequest(action_digest=d), re_pb2.ActionResult(exit_code=3)),
        f"/{RE}.ActionCache/UpdateActionResult":
            (re_pb2.UpdateActionResultRequest(action_result=re_pb2.ActionResult(exit_code=9)),
             re_pb2.ActionResult(exit_code=9)),
        f"/{RE}.ContentAddressableStorage/FindMissingBlobs":
            (re_pb2.FindMissingBlobsRequest(blob_digests=[d]),
             re_pb2.FindMissingBlobsResponse(missing_blob_digests=[d])),
        f"/{RE}.ContentAddressableStorage/BatchUpdateBlobs":
            (re_pb2.BatchUpdateBlobsRequest(requests=[{"digest": d}]),
             re_pb2.BatchUpdateBlobsResponse(responses=[{"digest": d}])),
        f"/{RE}.ContentAddressableStorage/BatchReadBlobs":
            (re_pb2.BatchReadBlobsRequest(digests=[d]),
             re_pb2.BatchReadBlobsResponse(responses=[{"digest": d}])),
        f"/{RE}.Capabilities/GetCapabilities":
            (re_pb2.GetCapabilitiesRequest(),
             re_pb2.ServerCapabilities(low_api_version={"major": 2})),
        "/google.bytestream.ByteStream/QueryWriteStatus":
            (bs_pb2.QueryWriteStatusRequest(resource_name="r"),
             bs_pb2.QueryWriteStatusResponse(committed_size=1, complete=True)),
    }
    for path, (req, want) in cases.items():
        assert _raw(channel, path, req.SerializeToString()) == [want.SerializeToString()], path
    tree = _raw(channel, f"/{RE}.ContentAddressableStorage/GetTree",
                re_pb2.GetTreeRequest().SerializeToString())
    assert [re_pb2.GetTreeResponse.FromString(b).next_page_token for b in tree] == ["0", "1"]
    assert _raw(channel, "/google.bytestream.ByteStream/Read",
                bs_pb2.ReadRequest(resource_name="xy").SerializeToString()) == [b"R\x02xy"]
    written = _raw(channel, "/google.bytestream.ByteStream/Write",
                   [bs_pb2.WriteRequest(data=b"abc").SerializeToString(),
                    bs_pb2.WriteRequest(data=b"de", finish_write=True).SerializeToString()])
    assert written == [bs_pb2.WriteResponse(committed_size=5).SerializeToString()]


def test_generated_stubs_use_the_same_paths(channel: grpc.Channel) -> None:
    d = re_pb2.Digest(hash="ab", size_bytes=4)
    assert re_grpc.ActionCacheStub(channel).GetActionResult(
        re_pb2.GetActionResultRequest(action_digest=d), timeout=10).exit_code == 4
    cas = re_grpc.ContentAddressableStorageStub(channel)
    assert list(cas.FindMissingBlobs(re_pb2.FindMissingBlobsRequest(blob_digests=[d]),
                                     timeout=10).missing_blob_digests) == [d]
    assert len(list(cas.GetTree(re_pb2.GetTreeRequest(), timeout=10))) == 2
    caps = re_grpc.CapabilitiesStub(channel).GetCapabilities(re_pb2.GetCapabilitiesRequest(),
                                                             timeout=10)
    assert caps.low_api_version.major == 2
    bs = bs_grpc.ByteStreamStub(channel)
    resp = bs.Write(iter([bs_pb2.WriteRequest(resource_name="r", data=b"1234")]), timeout=10)
    assert resp.committed_size == 4
    assert [r.data for r in bs.Read(bs_pb2.ReadRequest(resource_name="q"), timeout=10)] == [b"q"]
    assert bs.QueryWriteStatus(bs_pb2.QueryWriteStatusRequest(), timeout=10).complete


def test_unimplemented_methods_answer_unimplemented() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    re_grpc.add_ActionCacheServicer_to_server(re_grpc.ActionCacheServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            with pytest.raises(grpc.RpcError) as err:
                re_grpc.ActionCacheStub(ch).GetActionResult(re_pb2.GetActionResultRequest(),
                                                            timeout=10)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop(None)

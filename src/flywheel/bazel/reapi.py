"""REAPI v2 and ByteStream message classes and gRPC stubs.

The messages come from our own .proto files under ``flywheel/bazel/protos`` (the subset of
the Remote Execution API a cache serves), compiled at import time by grpcio-tools through
``grpc.protos_and_services``. Doing it at run time keeps the generated code in step with the
installed grpcio/protobuf (grpcio-tools pins both), so no generated files are committed.

The .proto files keep their upstream names (``build/bazel/...``, ``google/...``): gRPC method
paths come from the proto package names, and sharing the file names lets ``google.rpc.Status``
coexist with googleapis-common-protos if that is installed. Consequently the modules are
registered as ``build.bazel.remote.execution.v2.remote_execution_pb2`` and so on, and nothing
else in the process may register REAPI protos under the same file names in the default
descriptor pool (for example the ``buildgrid-common`` stubs).

This module is the one place that loads them; import the names below from here.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from pathlib import Path
from types import ModuleType

# grpcio ships no type information; with types-grpcio installed the ignore is moot.
import grpc  # type: ignore[import-untyped,unused-ignore]

PROTO_ROOT = Path(__file__).resolve().parent / "protos"

REMOTE_EXECUTION_PROTO = "build/bazel/remote/execution/v2/remote_execution.proto"
SEMVER_PROTO = "build/bazel/semver/semver.proto"
BYTESTREAM_PROTO = "google/bytestream/bytestream.proto"
STATUS_PROTO = "google/rpc/status.proto"

_LOCK = threading.Lock()


def _load() -> tuple[ModuleType, ModuleType, ModuleType, ModuleType, ModuleType, ModuleType]:
    """Compile and import the protos with PROTO_ROOT first on sys.path for the duration.

    grpc_tools resolves both the requested file and its imports against sys.path, so the
    root only needs to be there while the modules are built; afterwards they are all in
    sys.modules. Putting it first makes protoc prefer our files over any other copy of the
    same names that might sit on sys.path.

    The top-level name ``build`` is also claimed by an unrelated PyPI package (pypa/build),
    whose regular package would win over our namespace directory. For the duration of the
    load ``sys.modules["build"]`` is therefore a bare namespace module over PROTO_ROOT/build;
    the previous entry (or its absence) is restored afterwards, leaving only the
    ``build.bazel.*`` modules behind.
    """
    root = str(PROTO_ROOT)
    with _LOCK:
        added = root not in sys.path
        if added:
            sys.path.insert(0, root)
        previous_build = sys.modules.get("build")
        namespace = ModuleType("build")
        namespace.__path__ = [str(PROTO_ROOT / "build")]
        sys.modules["build"] = namespace
        try:
            semver = grpc.protos(SEMVER_PROTO)
            status = grpc.protos(STATUS_PROTO)
            re_msgs, re_svcs = grpc.protos_and_services(REMOTE_EXECUTION_PROTO)
            bs_msgs, bs_svcs = grpc.protos_and_services(BYTESTREAM_PROTO)
        finally:
            if previous_build is None:
                sys.modules.pop("build", None)
            else:
                sys.modules["build"] = previous_build
            if added:
                with contextlib.suppress(ValueError):
                    sys.path.remove(root)
    return re_msgs, re_svcs, bs_msgs, bs_svcs, semver, status


re_pb2, re_grpc, bs_pb2, bs_grpc, semver_pb2, status_pb2 = _load()

__all__ = [
    "PROTO_ROOT",
    "bs_grpc",
    "bs_pb2",
    "re_grpc",
    "re_pb2",
    "semver_pb2",
    "status_pb2",
]

"""REAPI v2 and ByteStream message classes, generated at build time from our .proto files
(the subset of the Remote Execution API a cache serves; see setup.py).

Messages only: importing this costs protobuf, not grpc. The gRPC stubs and servicers are in
``reapi_grpc``, which only the gRPC server and clients import.
"""

from flywheel.bazel._generated.build.bazel.remote.execution.v2 import (
    remote_execution_pb2 as re_pb2,
)
from flywheel.bazel._generated.build.bazel.semver import semver_pb2
from flywheel.bazel._generated.google.bytestream import bytestream_pb2 as bs_pb2
from flywheel.bazel._generated.google.rpc import status_pb2

__all__ = ["bs_pb2", "re_pb2", "semver_pb2", "status_pb2"]

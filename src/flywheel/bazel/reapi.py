"""REAPI v2 and ByteStream message and service stubs.

Generated code comes from the PyPI package ``buildgrid-common``, which ships stubs compiled
from the published protos; this module is the one place that names it."""

from buildgrid.common.protos.build.bazel.remote.execution.v2 import (
    remote_execution_pb2 as re_pb2,
)
from buildgrid.common.protos.build.bazel.remote.execution.v2 import (
    remote_execution_pb2_grpc as re_grpc,
)
from buildgrid.common.protos.build.bazel.semver import semver_pb2
from buildgrid.common.protos.google.bytestream import bytestream_pb2 as bs_pb2
from buildgrid.common.protos.google.bytestream import bytestream_pb2_grpc as bs_grpc
from buildgrid.common.protos.google.rpc import status_pb2

__all__ = ["bs_grpc", "bs_pb2", "re_grpc", "re_pb2", "semver_pb2", "status_pb2"]

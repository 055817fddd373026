"""REAPI v2 and ByteStream gRPC stubs and servicer bases (generated at build time)."""

from flywheel.bazel._generated.build.bazel.remote.execution.v2 import (
    remote_execution_pb2_grpc as re_grpc,
)
from flywheel.bazel._generated.google.bytestream import bytestream_pb2_grpc as bs_grpc

__all__ = ["bs_grpc", "re_grpc"]

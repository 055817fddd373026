"""The gRPC process: REAPI cache services, ByteStream and health checking on one port."""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from flywheel.app.services import Services
from flywheel.bazel.reapi import bs_grpc, re_grpc
from flywheel.server.access import Access
from flywheel.server.blocking import Offload
from flywheel.server.grpc.services import (
    ActionCache,
    ByteStream,
    Capabilities,
    ContentAddressableStorage,
)

log = logging.getLogger(__name__)

MAX_MESSAGE = 16 << 20
SERVICES = ("build.bazel.remote.execution.v2.Capabilities",
            "build.bazel.remote.execution.v2.ActionCache",
            "build.bazel.remote.execution.v2.ContentAddressableStorage",
            "google.bytestream.ByteStream")


def build_server(services: Services) -> grpc.aio.Server:
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
        # A second process on the same port would silently take half the traffic.
        ("grpc.so_reuseport", 0),
    ])
    access = Access(services)
    offload = Offload(services.settings.blocking_threads)
    re_grpc.add_CapabilitiesServicer_to_server(Capabilities(access, offload), server)
    re_grpc.add_ActionCacheServicer_to_server(ActionCache(access, offload), server)
    re_grpc.add_ContentAddressableStorageServicer_to_server(
        ContentAddressableStorage(access, offload), server)
    bs_grpc.add_ByteStreamServicer_to_server(
        ByteStream(access, offload, str(services.blobs.tmp_dir)), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.health = health_servicer  # type: ignore[attr-defined]
    return server

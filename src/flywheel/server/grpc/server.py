"""The gRPC process: REAPI cache services, ByteStream and health checking on one port."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from flywheel.app.services import Services
from flywheel.bazel.reapi import bs_pb2, re_pb2
from flywheel.server.access import Access
from flywheel.server.blocking import Offload
from flywheel.server.grpc.registration import register
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


@dataclass(frozen=True)
class GrpcServer:
    server: grpc.aio.Server
    # Health checking (grpc.health.v1) reports SERVING once started, NOT_SERVING on drain.
    health: health.aio.HealthServicer


def build_server(services: Services) -> GrpcServer:
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
        # A second process on the same port would silently take half the traffic.
        ("grpc.so_reuseport", 0),
    ])
    access = Access(services)
    offload = Offload(services.settings.blocking_threads)
    reapi = re_pb2.DESCRIPTOR.services_by_name
    register(server, Capabilities(access, offload), reapi["Capabilities"])
    register(server, ActionCache(access, offload), reapi["ActionCache"])
    register(server, ContentAddressableStorage(access, offload),
             reapi["ContentAddressableStorage"])
    register(server, ByteStream(access, offload, str(services.blobs.tmp_dir)),
             bs_pb2.DESCRIPTOR.services_by_name["ByteStream"])
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    return GrpcServer(server, health_servicer)

"""Registering servicers from the service descriptors, with deserializers of our own.

grpc's generated registration parses each request before our code runs and reports a
message that does not parse as UNKNOWN. Here a request that does not parse reaches the
method as ``UNDECODABLE``, which it answers with INVALID_ARGUMENT like any other bad input.
Only the methods a servicer declares are registered; the rest answer UNIMPLEMENTED."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message


class _Undecodable:
    def __repr__(self) -> str:
        return "UNDECODABLE"


UNDECODABLE: Any = _Undecodable()

_HANDLERS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def _parser(cls: type[Message]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except DecodeError:
            return UNDECODABLE
    return parse


def _handler(method: MethodDescriptor, implementation: Callable[..., Any]) -> Any:
    request = message_factory.GetMessageClass(method.input_type)
    response = message_factory.GetMessageClass(method.output_type)
    make = _HANDLERS[method.client_streaming, method.server_streaming]
    return make(implementation, request_deserializer=_parser(request),
                response_serializer=response.SerializeToString)


def register(server: grpc.aio.Server, servicer: object, service: ServiceDescriptor) -> None:
    handlers = {m.name: _handler(m, getattr(servicer, m.name)) for m in service.methods
                if hasattr(getattr(servicer, m.name, None), "declared")}
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),))

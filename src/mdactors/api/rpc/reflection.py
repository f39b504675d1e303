"""gRPC server reflection (``grpc.reflection.v1`` and ``v1alpha``), the answers without the I/O.

So grpcurl, Postman and Evans can list the services and fetch their proto
descriptors from the server instead of being handed the ``.proto`` files.
Both versions share one wire layout (same messages, same field numbers),
so :class:`Reflection` answers either: it builds the response from the
request's own module.

What it serves is exactly the files of the services it is given (and their
imports, such as ``google/protobuf/timestamp.proto``), never the rest of
the process's descriptor pool. A ``file_descriptor_response`` carries the
file asked for and, first time on the stream, each of its transitive
imports (as grpc-go does), so a client can build the descriptors from one
answer. We define no extensions: ``all_extension_numbers_of_type`` of a
served message is an empty list, ``file_containing_extension`` NOT_FOUND.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor, ServiceDescriptor

from mdactors._proto import marketdata_pb2
from mdactors._proto.grpc_health.v1 import health_pb2
from mdactors._proto.grpc_reflection.v1 import reflection_pb2 as v1
from mdactors._proto.grpc_reflection.v1alpha import reflection_pb2 as v1alpha
from mdactors.api.rpc.status import Code

__all__ = ["SERVED_SERVICES", "VERSIONS", "Reflection", "ReflectionStream"]

#: The reflection modules, by service full name.
VERSIONS: dict[str, ModuleType] = {
    "grpc.reflection.v1.ServerReflection": v1,
    "grpc.reflection.v1alpha.ServerReflection": v1alpha,
}

#: Every service a gRPC endpoint of ours serves, reflection included.
SERVED_SERVICES: tuple[ServiceDescriptor, ...] = (
    marketdata_pb2.DESCRIPTOR.services_by_name["MarketDataService"],
    health_pb2.DESCRIPTOR.services_by_name["Health"],
    v1.DESCRIPTOR.services_by_name["ServerReflection"],
    v1alpha.DESCRIPTOR.services_by_name["ServerReflection"],
)


def _closure(files: Iterable[FileDescriptor]) -> dict[str, FileDescriptor]:
    """``files`` and everything they import, transitively, by file name."""
    out: dict[str, FileDescriptor] = {}
    pending = list(files)
    while pending:
        file = pending.pop()
        if file.name not in out:
            out[file.name] = file
            pending.extend(file.dependencies)
    return out


class Reflection:
    """What the reflection service knows: service names, files, and the symbols in them."""

    def __init__(self, services: Iterable[ServiceDescriptor] = SERVED_SERVICES) -> None:
        services = tuple(services)
        self.service_names = sorted(service.full_name for service in services)
        self.files = _closure(service.file for service in services)
        self._symbols: dict[str, FileDescriptor] = {}
        self._messages: set[str] = set()
        for file in self.files.values():
            for service in file.services_by_name.values():
                self._symbols[service.full_name] = file
                for method in service.methods:
                    self._symbols[method.full_name] = file
            for enum in file.enum_types_by_name.values():
                self._add_enum(enum, file)
            for message in file.message_types_by_name.values():
                self._add_message(message, file)

    def _add_enum(self, enum: Any, file: FileDescriptor) -> None:
        self._symbols[enum.full_name] = file
        for value in enum.values:
            # Enum values are scoped like siblings of their enum (protobuf's rule).
            self._symbols[f"{enum.full_name.rpartition('.')[0]}.{value.name}".lstrip(".")] = file

    def _add_message(self, message: Any, file: FileDescriptor) -> None:
        self._symbols[message.full_name] = file
        self._messages.add(message.full_name)
        for field in message.fields:
            self._symbols[field.full_name] = file
        for oneof in message.oneofs:
            self._symbols[oneof.full_name] = file
        for enum in message.enum_types:
            self._add_enum(enum, file)
        for nested in message.nested_types:
            self._add_message(nested, file)

    def file_by_name(self, name: str) -> FileDescriptor | None:
        """A served file by its name (``marketdata.proto``)."""
        return self.files.get(name)

    def file_of_symbol(self, symbol: str) -> FileDescriptor | None:
        """The served file that declares ``symbol`` (a service, method, message, field, enum...)."""
        return self._symbols.get(symbol.lstrip("."))

    def is_message(self, name: str) -> bool:
        """Whether ``name`` is a message type of a served file."""
        return name.lstrip(".") in self._messages

    def stream(self) -> ReflectionStream:
        """The state of one ``ServerReflectionInfo`` call."""
        return ReflectionStream(self)


class ReflectionStream:
    """One ``ServerReflectionInfo`` call: answers each request, remembers the files sent."""

    def __init__(self, reflection: Reflection) -> None:
        self.reflection = reflection
        self._sent: set[str] = set()

    def answer(self, request: Any) -> Any:
        """The response to one request (a ``ServerReflectionRequest`` of v1 or v1alpha)."""
        module = _module_of(request)
        response = module.ServerReflectionResponse(valid_host=request.host)
        response.original_request.CopyFrom(request)
        reflection = self.reflection
        kind = request.WhichOneof("message_request")
        if kind == "list_services":
            response.list_services_response.service.extend(
                module.ServiceResponse(name=name) for name in reflection.service_names
            )
        elif kind == "file_by_filename":
            self._files(response, reflection.file_by_name(request.file_by_filename), kind)
        elif kind == "file_containing_symbol":
            symbol = request.file_containing_symbol
            self._files(response, reflection.file_of_symbol(symbol), kind)
        elif kind == "all_extension_numbers_of_type":
            name = request.all_extension_numbers_of_type
            if reflection.is_message(name):
                response.all_extension_numbers_response.base_type_name = name.lstrip(".")
            else:
                _error(response, Code.NOT_FOUND, f"unknown message type {name[:200]!r}")
        elif kind == "file_containing_extension":
            extension = request.file_containing_extension
            _error(
                response,
                Code.NOT_FOUND,
                f"no extension {extension.extension_number} of "
                f"{extension.containing_type[:200]!r}: this server defines no extensions",
            )
        else:
            _error(response, Code.INVALID_ARGUMENT, "the request names no message_request")
        return response

    def _files(self, response: Any, file: FileDescriptor | None, kind: str) -> None:
        if file is None:
            asked = getattr(response.original_request, kind)
            _error(response, Code.NOT_FOUND, f"{kind} {asked[:200]!r} is not served here")
            return
        # The file itself always (a client may ask again), its imports once per stream.
        out = [file]
        for name, dependency in _closure([file]).items():
            if name != file.name and name not in self._sent:
                out.append(dependency)
        self._sent.update(item.name for item in out)
        response.file_descriptor_response.file_descriptor_proto.extend(
            _serialized(item) for item in out
        )


def _module_of(request: Any) -> ModuleType:
    for module in (v1, v1alpha):
        if isinstance(request, module.ServerReflectionRequest):
            return module
    raise TypeError(f"not a ServerReflectionRequest: {type(request).__name__}")


def _error(response: Any, code: Code, message: str) -> None:
    response.error_response.error_code = int(code)
    response.error_response.error_message = message


def _serialized(file: FileDescriptor) -> bytes:
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    return proto.SerializeToString()

"""Server reflection on the gRPC port, with grpcio's own reflection client.

grpcio-reflection's ``ProtoReflectionDescriptorDatabase`` (v1alpha) is what
Python tools use to discover a server: list the services, fetch their files,
build a descriptor pool and call a method knowing nothing but its name, as
grpcurl does. v1 (which grpcurl asks first) is called raw through grpcio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
import pytest
import trio
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from mdactors._proto.grpc_reflection.v1 import reflection_pb2 as v1
from mdactors._proto.grpc_reflection.v1alpha import reflection_pb2 as v1alpha
from mdactors.api.rpc.reflection import Reflection
from mdactors.api.rpc.status import Code
from tests.conftest import running_service

T = TypeVar("T")
SERVICES = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "marketdata.MarketDataService",
]


@pytest.fixture
async def channel() -> AsyncIterator[grpc.Channel]:
    async with running_service() as service:
        with grpc.insecure_channel(f"127.0.0.1:{service.ports['grpc']}") as channel:
            yield channel


async def call(fn: Callable[[], T]) -> T:
    with trio.fail_after(15):
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


async def test_grpcio_reflection_client_lists_and_calls_by_name(channel: grpc.Channel) -> None:
    database = ProtoReflectionDescriptorDatabase(channel)
    assert sorted(await call(lambda: list(database.get_services()))) == SERVICES
    pool = descriptor_pool.DescriptorPool(database)
    service = await call(lambda: pool.FindServiceByName("marketdata.MarketDataService"))
    method = service.methods_by_name["GetPrice"]
    # Built only from what reflection sent (timestamp.proto came along as an import).
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    get_price = channel.unary_unary(
        "/marketdata.MarketDataService/GetPrice",
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=response_class.FromString,
    )
    response = await call(lambda: get_price(request_class(symbol="BTC"), timeout=10))
    assert response.key == "BTC/USD" and response.price > 0
    assert response.timestamp.seconds > 0
    # Symbols inside files resolve too: a message, an enum, a method.
    assert pool.FindMessageTypeByName("marketdata.PriceUpdate").fields_by_name["sequence"]
    assert await call(lambda: pool.FindEnumTypeByName("marketdata.SimulationType"))
    assert await call(lambda: pool.FindMethodByName("grpc.health.v1.Health.Check"))


def _raw_v1(channel: grpc.Channel, requests: list[v1.ServerReflectionRequest]) -> list[Any]:
    info = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=v1.ServerReflectionResponse.FromString,
    )
    return list(info(iter(requests), timeout=10))


async def test_v1_answers_each_request_in_order_on_one_stream(channel: grpc.Channel) -> None:
    requests = [
        v1.ServerReflectionRequest(list_services="*"),
        v1.ServerReflectionRequest(file_containing_symbol="marketdata.MarketDataService"),
        v1.ServerReflectionRequest(file_by_filename="marketdata.proto"),
        v1.ServerReflectionRequest(file_containing_symbol="no.Such"),
    ]
    listed, by_symbol, by_name, missing = await call(lambda: _raw_v1(channel, requests))
    assert [service.name for service in listed.list_services_response.service] == SERVICES
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(data).name
        for data in by_symbol.file_descriptor_response.file_descriptor_proto
    ]
    assert files == ["marketdata.proto", "google/protobuf/timestamp.proto"]
    # Imports go once per stream; the file asked for always.
    assert len(by_name.file_descriptor_response.file_descriptor_proto) == 1
    assert missing.error_response.error_code == Code.NOT_FOUND
    assert missing.original_request == requests[3]


async def test_reflection_does_not_break_the_other_services(channel: grpc.Channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    check = health_pb2_grpc.HealthStub(channel).Check
    response = await call(lambda: check(health_pb2.HealthCheckRequest(), timeout=10))
    assert response.status == health_pb2.HealthCheckResponse.SERVING


# -- the answers, without a server ------------------------------------------------


def test_answers_for_either_version_in_its_own_messages() -> None:
    stream = Reflection().stream()
    for module in (v1, v1alpha):
        answer = stream.answer(module.ServerReflectionRequest(host="h", list_services=""))
        assert isinstance(answer, module.ServerReflectionResponse)
        assert answer.valid_host == "h"
        assert "marketdata.MarketDataService" in {
            s.name for s in answer.list_services_response.service
        }


@pytest.mark.parametrize(
    ("request_fields", "code"),
    [
        ({"file_by_filename": "grpc/reflection/v1/nope.proto"}, Code.NOT_FOUND),
        # In the process's pool, but not served: never leaked.
        ({"file_containing_symbol": "google.protobuf.FileDescriptorProto"}, Code.NOT_FOUND),
        ({"all_extension_numbers_of_type": "no.Such"}, Code.NOT_FOUND),
        (
            {
                "file_containing_extension": v1.ExtensionRequest(
                    containing_type="marketdata.PriceUpdate"
                )
            },
            Code.NOT_FOUND,
        ),
        ({}, Code.INVALID_ARGUMENT),
    ],
)
def test_what_is_not_served_is_an_error_response(
    request_fields: dict[str, Any], code: Code
) -> None:
    answer = Reflection().stream().answer(v1.ServerReflectionRequest(**request_fields))
    assert answer.WhichOneof("message_response") == "error_response"
    assert answer.error_response.error_code == code and answer.error_response.error_message


def test_symbols_of_every_kind_resolve_and_no_extensions_exist() -> None:
    reflection = Reflection()
    for symbol in (
        "marketdata.MarketDataService.StreamPrices",
        "marketdata.PriceUpdate.change_info",
        "marketdata.MONTE_CARLO",
        "grpc.health.v1.HealthCheckResponse.ServingStatus",
        "grpc.health.v1.HealthCheckResponse.SERVING",
        ".google.protobuf.Timestamp",
    ):
        assert reflection.file_of_symbol(symbol) is not None, symbol
    answer = reflection.stream().answer(
        v1.ServerReflectionRequest(all_extension_numbers_of_type="marketdata.PriceUpdate")
    )
    numbers = answer.all_extension_numbers_response
    assert (
        numbers.base_type_name == "marketdata.PriceUpdate" and list(numbers.extension_number) == []
    )

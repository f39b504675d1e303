"""gRPC on the HTTP port (h2c with prior knowledge), with grpcio, sync and aio.

The same RPCs as on the gRPC port and as Connect and gRPC-Web on this port;
the status goes in HTTP/2 trailers (hypercorn's, made to end the stream by
:mod:`mdactors.api.http.h2_trailers`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio
import httpx
import pytest
import trio
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from mdactors._proto import marketdata_pb2 as pb
from mdactors._proto import marketdata_pb2_grpc as pb_grpc
from mdactors._proto.grpc_reflection.v1 import reflection_pb2 as reflection_v1
from mdactors.api.connect.grpc_http import split_trailer
from mdactors.api.connect.grpc_web import frame, trailer_frame
from mdactors.api.rpc.status import Code, RpcError
from mdactors.app import Service
from tests.conftest import running_service, wait_for

T = TypeVar("T")


@pytest.fixture
async def served() -> AsyncIterator[tuple[Service, grpc.Channel]]:
    async with running_service() as service:
        with grpc.insecure_channel(f"127.0.0.1:{service.ports['http']}") as channel:
            yield service, channel


async def call(fn: Callable[[], T]) -> T:
    with trio.fail_after(15):
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


def code_of(fn: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    try:
        fn()
    except grpc.RpcError as error:
        return error.code(), error.details()
    raise AssertionError("the call succeeded")


async def test_sync_client_calls_every_kind_of_rpc(served: tuple[Service, grpc.Channel]) -> None:
    service, channel = served
    stub = pb_grpc.MarketDataServiceStub(channel)
    price = await call(lambda: stub.GetPrice(pb.GetPriceRequest(symbol="eth-usd"), timeout=10))
    assert price.symbol == "eth-usd" and price.key == "ETH/USD" and price.live

    def take(count: int) -> list[pb.PriceUpdate]:
        stream = stub.StreamPrices(pb.StreamPricesRequest(symbols=["BTC/USD"]), timeout=10)
        out = []
        for update in stream:
            out.append(update)
            if len(out) == count:
                stream.cancel()
                break
        return out

    updates = await call(lambda: take(5))
    sequences = [update.sequence for update in updates]
    assert sequences == list(range(sequences[0], sequences[0] + 5))
    simulation = await call(
        lambda: stub.GenerateSimulation(
            pb.SimulationRequest(
                symbol="SOL/USD",
                simulation_type=pb.MONTE_CARLO,
                parameters=pb.SimulationParameters(data_points=40),
            ),
            timeout=10,
        )
    )
    assert len(simulation.simulated_data) == 40
    assert 0 <= simulation.similarity_metrics.confidence_score <= 1
    health = health_pb2_grpc.HealthStub(channel)
    response = await call(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=10))
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    # The cancelled stream went through the outlet and gave its slot back.
    streams = service.context.streams
    await wait_for(lambda: streams.subscribers[("BTC/USD", "grpc-http")] == 0)
    registry = service.context.metrics.registry
    observed = registry.get_sample_value(
        "market_data_publication_latency_seconds_count", {"client_type": "grpc-http"}
    )
    assert observed is not None and observed >= 5


async def test_aio_client(served: tuple[Service, grpc.Channel]) -> None:
    service, _ = served
    target = f"127.0.0.1:{service.ports['http']}"

    async def session() -> tuple[pb.GetPriceResponse, list[int], int]:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.MarketDataServiceStub(channel)
            price = await stub.GetPrice(pb.GetPriceRequest(symbol="BTC"), timeout=10)
            stream = stub.StreamPrices(pb.StreamPricesRequest(symbols=["BTC", "ETH"]), timeout=10)
            sequences = []
            async for update in stream:
                sequences.append(update.sequence)
                if len(sequences) == 6:
                    stream.cancel()
                    break
            health = health_pb2_grpc.HealthStub(channel)
            status = (await health.Check(health_pb2.HealthCheckRequest(), timeout=10)).status
            return price, sequences, status

    price, sequences, status = await call(lambda: asyncio.run(session()))
    assert price.key == "BTC/USD" and len(sequences) == 6
    assert status == health_pb2.HealthCheckResponse.SERVING


async def test_errors_are_grpc_statuses_in_trailers(served: tuple[Service, grpc.Channel]) -> None:
    _, channel = served
    stub = pb_grpc.MarketDataServiceStub(channel)
    code, details = await call(lambda: code_of(lambda: stub.GetPrice(pb.GetPriceRequest())))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "symbol" in details
    unknown = channel.unary_unary("/marketdata.MarketDataService/Nope")
    code, details = await call(lambda: code_of(lambda: unknown(b"", timeout=10)))
    assert code == grpc.StatusCode.UNIMPLEMENTED and "Nope" in details
    raw = channel.unary_unary("/marketdata.MarketDataService/GetPrice")
    code, details = await call(lambda: code_of(lambda: raw(b"\xff\xff", timeout=10)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "malformed" in details
    health = health_pb2_grpc.HealthStub(channel)
    code, _ = await call(
        lambda: code_of(lambda: health.Check(health_pb2.HealthCheckRequest(service="x")))
    )
    assert code == grpc.StatusCode.NOT_FOUND

    def stream_until_deadline() -> None:
        for _ in stub.StreamPrices(pb.StreamPricesRequest(symbols=["BTC"]), timeout=0.3):
            pass

    code, _ = await call(lambda: code_of(stream_until_deadline))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED

    def bad_stream() -> None:
        list(stub.StreamPrices(pb.StreamPricesRequest(symbols=["NOPE/USD"]), timeout=10))

    code, details = await call(lambda: code_of(bad_stream))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "NOPE/USD" in details


async def test_oversized_request_is_resource_exhausted() -> None:
    async with running_service({"MAX_REQUEST_BYTES": "1024"}) as service:
        with grpc.insecure_channel(f"127.0.0.1:{service.ports['http']}") as channel:
            stub = pb_grpc.MarketDataServiceStub(channel)
            request = pb.GetPriceRequest(symbol="B" * 5000)
            code, _ = await call(lambda: code_of(lambda: stub.GetPrice(request, timeout=10)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_grpc_over_http1_is_refused_with_a_pointer_to_grpc_web(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post(
        "/marketdata.MarketDataService/GetPrice",
        content=frame(pb.GetPriceRequest(symbol="BTC").SerializeToString()),
        headers={"Content-Type": "application/grpc", "TE": "trailers"},
    )
    assert response.status_code == 415
    assert "grpc-web" in response.json()["message"]


def test_split_trailer() -> None:
    body = frame(b"abc") + frame(b"de")
    assert split_trailer(body) == (body, None)
    rest, headers = split_trailer(body + trailer_frame(RpcError(Code.NOT_FOUND, "gone 100%")))
    assert rest == body
    assert headers == [(b"grpc-status", b"5"), (b"grpc-message", b"gone 100%25")]


async def test_reflection_on_the_http_port(served: tuple[Service, grpc.Channel]) -> None:
    _, channel = served
    database = ProtoReflectionDescriptorDatabase(channel)
    services = await call(lambda: sorted(database.get_services()))
    assert "marketdata.MarketDataService" in services
    assert "grpc.reflection.v1.ServerReflection" in services
    pool = descriptor_pool.DescriptorPool(database)
    method = await call(lambda: pool.FindMethodByName("marketdata.MarketDataService.StreamPrices"))
    assert method.output_type.full_name == "marketdata.PriceUpdate"
    info = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=reflection_v1.ServerReflectionResponse.FromString,
    )
    requests = [
        reflection_v1.ServerReflectionRequest(list_services=""),
        reflection_v1.ServerReflectionRequest(file_by_filename="no/such.proto"),
    ]
    listed, missing = await call(lambda: list(info(iter(requests), timeout=10)))
    assert len(listed.list_services_response.service) == len(services)
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


async def test_reflection_needs_grpc_over_http2(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        content=frame(b""),
        headers={"Content-Type": "application/grpc-web+proto"},
    )
    assert response.status_code == 415 and "HTTP/2" in response.json()["message"]

"""The gRPC front end: ``marketdata.MarketDataService`` and ``grpc.health.v1.Health`` on purerpc.

Thin: every method decodes nothing itself (the dispatcher in
:mod:`mdactors.api.grpc.transport` hands it a parsed request), calls
:class:`~mdactors.api.rpc.service.MarketDataRpc`, and returns or yields
protobuf messages; ``StreamPrices`` writes its stream through the stream's
outlet instead (:func:`mdactors.api.grpc.fanout.stream_prices`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import trio

from mdactors._proto import marketdata_grpc
from mdactors._proto import marketdata_pb2 as pb
from mdactors._proto.grpc_health.v1 import health_grpc, health_pb2
from mdactors.api.context import ApiContext
from mdactors.api.grpc.fanout import PriceFanOut, price_fan_outs, stream_prices
from mdactors.api.grpc.reflection import reflection_services
from mdactors.api.grpc.transport import GrpcCall, GrpcServer
from mdactors.api.rpc.proto_codec import Encoded
from mdactors.api.rpc.service import HEALTH_SERVICES, MarketDataRpc
from mdactors.api.rpc.status import draining_error
from mdactors.engine.fanout import FanOuts

__all__ = ["CLIENT_TYPE", "HealthServicer", "MarketDataServicer", "build_server", "serve_grpc"]

log = logging.getLogger("mdactors.grpc")

#: ``client_type`` label of gRPC streams in metrics.
CLIENT_TYPE = "grpc"


class MarketDataServicer(marketdata_grpc.MarketDataServiceServicer):
    """``marketdata.MarketDataService`` over :class:`MarketDataRpc`."""

    def __init__(self, rpc: MarketDataRpc, fan_outs: FanOuts[PriceFanOut]) -> None:
        self.rpc = rpc
        self.fan_outs = fan_outs

    async def GetPrice(
        self, input_message: pb.GetPriceRequest, request: GrpcCall
    ) -> pb.GetPriceResponse:
        """Latest price; any well-formed symbol answers."""
        return self.rpc.get_price(input_message)

    async def StreamPrices(self, input_message: pb.StreamPricesRequest, request: GrpcCall) -> None:
        """Current state per symbol, then every tick (or one per interval), written
        through the stream's outlet (a coroutine: the dispatcher lets it write)."""
        with self.rpc.price_feed(input_message, CLIENT_TYPE) as feed:
            await stream_prices(self.fan_outs, feed, request)

    async def GenerateSimulation(
        self, input_message: pb.SimulationRequest, request: GrpcCall
    ) -> Encoded:
        """Historical vs simulated bars with similarity metrics (pre-encoded)."""
        return await self.rpc.generate_simulation(input_message)

    async def StreamScenario(
        self, input_message: pb.ScenarioRequest, request: GrpcCall
    ) -> AsyncIterator[pb.PriceUpdate]:
        """A scenario on the symbol's model, one update per step at its due time."""
        # The feed's sleep until each update is due is the real await per message.
        async for update in self.rpc.scenario_updates(input_message):
            yield update

    async def HealthCheck(
        self, input_message: pb.HealthCheckRequest, request: GrpcCall
    ) -> pb.HealthCheckResponse:
        """Health with details (service name and version, active streams)."""
        return self.rpc.health_check(input_message)


class HealthServicer(health_grpc.HealthServicer):
    """The standard ``grpc.health.v1.Health`` for ``""``, ``market-data`` and the service name.

    NOT_SERVING as soon as the drain is requested; ``Watch`` streams then
    end with UNAVAILABLE when the listeners close.
    """

    def __init__(self, ctx: ApiContext, rpc: MarketDataRpc) -> None:
        self.ctx = ctx
        self.rpc = rpc

    async def Check(
        self, input_message: health_pb2.HealthCheckRequest, request: GrpcCall
    ) -> health_pb2.HealthCheckResponse:
        """Serving status of one service name; NOT_FOUND for names we do not serve."""
        return self.rpc.standard_check(input_message)

    async def List(
        self, input_message: health_pb2.HealthListRequest, request: GrpcCall
    ) -> health_pb2.HealthListResponse:
        """Every service name with its status."""
        response = health_pb2.HealthListResponse()
        for name in HEALTH_SERVICES:
            response.statuses[name].status = self.rpc.standard_health(name) or 0
        return response

    async def Watch(
        self, input_message: health_pb2.HealthCheckRequest, request: GrpcCall
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        """The status now, then on every change, until the server drains."""
        lifecycle = self.ctx.lifecycle
        status = self.rpc.standard_health(input_message.service)
        if status is None:
            yield health_pb2.HealthCheckResponse(
                status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            )
        else:
            yield health_pb2.HealthCheckResponse(status=status)
            if status == health_pb2.HealthCheckResponse.SERVING:
                await lifecycle.drain_requested.wait()
                yield health_pb2.HealthCheckResponse(
                    status=health_pb2.HealthCheckResponse.NOT_SERVING
                )
        await lifecycle.draining.wait()
        raise draining_error()


def build_server(ctx: ApiContext, fan_outs: FanOuts[PriceFanOut]) -> GrpcServer:
    """A gRPC server for ``ctx`` on the configured host and port (not started);
    its streams use ``fan_outs`` once they have a nursery."""
    settings = ctx.settings
    server = GrpcServer(
        settings.host,
        settings.grpc_port,
        max_message_bytes=settings.max_request_bytes,
        slow_consumer_timeout=settings.slow_consumer_timeout,
        reuse_port=settings.reuse_port,
    )
    rpc = MarketDataRpc(ctx)
    server.add_service(MarketDataServicer(rpc, fan_outs).service)
    server.add_service(HealthServicer(ctx, rpc).service)
    for service in reflection_services():
        server.add_service(service)
    return server


async def serve_grpc(
    ctx: ApiContext, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve gRPC until the drain closes the listeners; reports the bound port."""
    fan_outs = price_fan_outs()
    server = build_server(ctx, fan_outs)
    async with trio.open_nursery() as nursery:
        fan_outs.nursery = nursery
        await server.serve(ctx.lifecycle.draining.wait, task_status=task_status)
        nursery.cancel_scope.cancel()

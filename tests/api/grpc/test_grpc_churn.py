"""gRPC stream churn leaves no trace on its connection, and does not slow it down.

A client that keeps one channel open and resubscribes (every UI that switches
symbols) opens and cancels streams for hours. Each stream that ended, however
it ended, must be gone from every per-connection table (our calls, purerpc's
streams and read buffers, h2's stream map), or each WINDOW_UPDATE walks them
all and the connection gets slower with every stream it ever carried.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import grpc
import pytest
import trio

from mdactors._proto import marketdata_pb2 as pb
from mdactors._proto import marketdata_pb2_grpc as pb_grpc
from mdactors.api.grpc.fanout import price_fan_outs
from mdactors.api.grpc.service import build_server
from mdactors.api.grpc.transport import CLOSED_STREAMS_KEPT, ConnectionTables, GrpcServer
from mdactors.app import Service
from tests.conftest import RawGrpc, running_service, wait_for

BTC = "BTC/USD"
SYMBOLS = [BTC, "ETH/USD", "SOL/USD", "ADA/USD", "DOT/USD", "USDT/USD"]
STREAMS = 2500
CONCURRENCY = 16

Tables = Callable[[], list[ConnectionTables]]


@asynccontextmanager
async def grpc_server(service: Service) -> AsyncIterator[GrpcServer]:
    """A gRPC server of ``service``'s context on its own port, whose tables the test reads.

    It stops accepting when the service drains, as the service's own server does.
    """
    fan_outs = price_fan_outs()
    server = build_server(service.context, fan_outs)
    async with trio.open_nursery() as nursery:
        fan_outs.nursery = nursery
        await nursery.start(server.serve, service.context.lifecycle.draining.wait)
        yield server
        nursery.cancel_scope.cancel()


def clean(tables: list[ConnectionTables]) -> bool:
    """Whether no connection holds anything of an ended stream."""
    return all(
        (t.calls, t.streams, t.h2_streams, t.read_buffers) == (0, 0, 0, 0)
        and t.closed_record <= CLOSED_STREAMS_KEPT
        for t in tables
    )


def churn(port: int, tables: Tables) -> tuple[list[float], list[ConnectionTables]]:
    """On one grpc.aio channel, open-read-cancel :data:`STREAMS` streams.

    Returns the server's CPU time per stream in each tenth of the streams
    (in start order) and its tables once clean (or after 5 s), read while
    the channel is open. CPU time, not wall time: the machine is shared.
    One more tenth of streams runs after the last mark: the drain at the
    end, when fewer streams share the server's tick work, is not measured
    as a tenth of the churn.
    """

    def server_cpu() -> float:
        return trio.from_thread.run_sync(time.thread_time)  # the service's thread

    async def main() -> tuple[list[float], list[ConnectionTables]]:
        tenth = STREAMS // 10
        marks: list[float] = []
        started = iter(range(STREAMS + tenth))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            md = pb_grpc.MarketDataServiceStub(channel)

            async def worker() -> None:
                for index in started:
                    if index % tenth == 0 and index <= STREAMS:
                        marks.append(server_cpu())
                    stream = md.StreamPrices(pb.StreamPricesRequest(symbols=SYMBOLS), timeout=20)
                    async for _ in stream:
                        break
                    stream.cancel()

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            per_stream = [(end - begin) / tenth for begin, end in itertools.pairwise(marks)]
            deadline = time.monotonic() + 5
            while True:
                seen = trio.from_thread.run_sync(tables)
                if clean(seen) or time.monotonic() > deadline:
                    return per_stream, seen
                await asyncio.sleep(0.01)

    return asyncio.run(main())


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_open_then_cancel_churn_leaves_the_connection_clean_and_fast() -> None:
    # Fast ticks: each tick's bytes bring a connection-level WINDOW_UPDATE,
    # which used to wake every stream the connection ever carried.
    fast_ticks = {"PRICE_UPDATE_INTERVAL": "20ms"}
    async with running_service(fast_ticks) as service, grpc_server(service) as server:
        per_stream, tables = await trio.to_thread.run_sync(
            churn, server.port, server.connection_tables
        )
        assert len(tables) == 1, tables
        assert clean(tables), tables
        tenths = ", ".join(f"{cpu * 1e3:.2f}" for cpu in per_stream)
        assert per_stream[-1] <= 1.5 * per_stream[0], f"server CPU ms per stream by tenth: {tenths}"
        await wait_for(lambda: service.context.streams.active == 0)


async def test_every_way_a_stream_ends_leaves_the_connection_clean() -> None:
    env = {"SLOW_CONSUMER_TIMEOUT": "300ms", "PRICE_UPDATE_INTERVAL": "20ms"}
    async with running_service(env) as service, grpc_server(service) as server:

        async def endings() -> list[grpc.StatusCode]:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                md = pb_grpc.MarketDataServiceStub(channel)
                codes = []
                # The client's deadline, then the server's error, then a finished unary
                # call, then an unknown method that sends a body the server never reads.
                slow = pb.StreamPricesRequest(symbols=[BTC], update_interval_ms=5000)
                calls = [
                    md.StreamPrices(slow, timeout=0.3),
                    md.StreamPrices(pb.StreamPricesRequest(symbols=["no such!"]), timeout=5),
                ]
                for stream in calls:
                    try:
                        async for _ in stream:
                            pass
                    except grpc.aio.AioRpcError as error:
                        codes.append(error.code())
                await md.GetPrice(pb.GetPriceRequest(symbol=BTC), timeout=5)
                unknown = channel.unary_unary("/marketdata.MarketDataService/Nope")
                try:
                    await unknown(b"x" * 1000, timeout=5)
                except grpc.aio.AioRpcError as error:
                    codes.append(error.code())
                seen: list[ConnectionTables] = []
                deadline = time.monotonic() + 5
                while not (seen and clean(seen)) and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                    seen = trio.from_thread.run_sync(server.connection_tables)
                assert clean(seen), seen
                return codes

        codes = await trio.to_thread.run_sync(lambda: asyncio.run(endings()))
        assert codes == [
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.UNIMPLEMENTED,
        ]

        # A client that stops reading is ended as a slow consumer.
        slow_client = await RawGrpc.connect(server.port, window=400)
        request = pb.StreamPricesRequest(symbols=[BTC]).SerializeToString()
        await slow_client.start("/marketdata.MarketDataService/StreamPrices", request)
        with trio.fail_after(5):
            code, _ = await slow_client.wait_trailers()
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        await wait_for(lambda: clean(server.connection_tables()))

        # The drain ends the open streams and closes every connection.
        client = await RawGrpc.connect(server.port)
        await client.start("/marketdata.MarketDataService/StreamPrices", request)
        with trio.fail_after(5):
            await client.messages_until(1)
        service.context.lifecycle.begin_drain()
        with trio.fail_after(5):
            code, _ = await client.wait_trailers()
        assert code == grpc.StatusCode.UNAVAILABLE.value[0]
        await wait_for(lambda: server.connection_tables() == [])
        assert service.context.streams.active == 0

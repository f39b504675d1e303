"""Baseline gRPC server: grpc.aio ``StreamPrices``, one shared generator, per-client queues.

Each symbol's generator builds and serialises one ``PriceUpdate`` per tick
and puts the bytes into every subscribed client's bounded ``asyncio.Queue``
(oldest dropped when full); each stream yields from its own queue. Same
``marketdata.MarketDataService/StreamPrices`` wire as mdactors, so the same
clients measure both.

    python -m bench.baselines.grpc_server --port 0 --symbols BTC/USD --interval 100ms
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from bench.baselines.ticks import WalkTick, announce, main, paced_ticks
from mdactors._proto import marketdata_pb2 as pb

QUEUE_SIZE = 256


def encode(tick: WalkTick) -> bytes:
    """The ``PriceUpdate`` of a tick, with the fields the harness reads."""
    seconds, nanos = divmod(tick.ts_ns, 1_000_000_000)
    return pb.PriceUpdate(
        symbol=tick.symbol,
        price=tick.price,
        volume=1.0,
        source="baseline",
        sequence=tick.seq,
        bid=tick.price - 0.01,
        ask=tick.price + 0.01,
        timestamp_ns=tick.ts_ns,
        key=tick.symbol,
        timestamp={"seconds": seconds, "nanos": nanos},
    ).SerializeToString()


class Fanout:
    """Subscribers' queues per symbol, fed by one generator task per symbol."""

    def __init__(self, symbols: list[str], interval: float) -> None:
        self.interval = interval
        self.queues: dict[str, set[asyncio.Queue[bytes]]] = {symbol: set() for symbol in symbols}
        self.latest: dict[str, bytes] = {}

    async def generate(self, symbol: str) -> None:
        """Publish ``symbol``'s ticks forever."""
        async for tick in paced_ticks(symbol, self.interval):
            data = self.latest[symbol] = encode(tick)
            for queue in self.queues[symbol]:
                if queue.full():
                    queue.get_nowait()
                queue.put_nowait(data)

    async def stream(
        self, request: pb.StreamPricesRequest, context: object
    ) -> AsyncIterator[bytes]:
        """One ``StreamPrices`` call: the latest tick per symbol, then every tick."""
        queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_SIZE)
        symbols = [symbol for symbol in request.symbols if symbol in self.queues]
        for symbol in symbols:
            if symbol in self.latest:
                queue.put_nowait(self.latest[symbol])
            self.queues[symbol].add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            for symbol in symbols:
                self.queues[symbol].discard(queue)


async def serve(port: int, symbols: list[str], interval: float) -> None:
    """Run the server until cancelled."""
    fanout = Fanout(symbols, interval)
    handler = grpc.method_handlers_generic_handler(
        "marketdata.MarketDataService",
        {
            "StreamPrices": grpc.unary_stream_rpc_method_handler(
                fanout.stream, request_deserializer=pb.StreamPricesRequest.FromString
            )
        },
    )
    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 100_000)])
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    async with asyncio.TaskGroup() as generators:
        for symbol in symbols:
            generators.create_task(fanout.generate(symbol))
        announce("grpc", bound)
        await server.wait_for_termination()


if __name__ == "__main__":
    main(__doc__.splitlines()[0], serve)

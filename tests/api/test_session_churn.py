"""Churned sessions of every streaming transport leave nothing behind.

Connect, SSE, WebSocket and Binance clients that open a stream, read one
message and go away, many times over: afterwards the process holds no
stream slot, subscriber count, subscription, Topic wake-up listener,
session or broadcaster of theirs (the gRPC side: ``test_grpc_churn``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from mdactors._proto import marketdata_pb2 as pb
from mdactors.api.binance.streams import BinanceStreams
from mdactors.api.ws.server import WsServer
from mdactors.app import Service
from tests.conftest import read_stream, running_service, wait_for

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

SESSIONS = 120
CONCURRENCY = 8


@asynccontextmanager
async def ws_servers(service: Service) -> AsyncIterator[tuple[WsServer, BinanceStreams]]:
    """A WebSocket server with Binance streams on ``service``'s context, as ``serve_ws``
    builds it, whose tables the test can read."""
    server = WsServer(service.context)
    binance = BinanceStreams(server)
    async with trio.open_nursery() as nursery:
        await nursery.start(binance.run)
        await nursery.start(server.run)
        yield server, binance
        nursery.cancel_scope.cancel()


def traces(service: Service, server: WsServer, binance: BinanceStreams) -> dict[str, int]:
    """Everything a live stream registers somewhere, counted."""
    ctx = service.context
    binance_topics = [feed.topic for feed in binance.feeds.values()] + [binance.all_tickers.topic]
    return {
        "streams": ctx.streams.active,
        "subscribers": sum(ctx.streams.subscribers.values()),
        "subscriptions": len(ctx.streams._subscriptions),
        "tick listeners": sum(len(a.topic._listeners) for a in ctx.market.actors.values()),
        "binance listeners": sum(len(topic._listeners) for topic in binance_topics),
        "ws sessions": len(server.sessions),
        "ws broadcasters": len(server.broadcasts.by_key),
        "binance sessions": len(binance.sessions),
    }


async def churn(one: Callable[[int], Awaitable[None]]) -> None:
    """Run ``one(index)`` :data:`SESSIONS` times, :data:`CONCURRENCY` at a time."""
    indices = iter(range(SESSIONS))

    async def worker() -> None:
        for index in indices:
            with trio.fail_after(10):
                await one(index)

    async with trio.open_nursery() as nursery:
        for _ in range(CONCURRENCY):
            nursery.start_soon(worker)


async def test_connect_sse_websocket_and_binance_churn_leave_no_trace() -> None:
    async with running_service() as service, ws_servers(service) as (server, binance):
        idle = traces(service, server, binance)
        assert idle["streams"] == 0
        http = f"http://127.0.0.1:{service.ports['http']}"
        ws = f"ws://127.0.0.1:{server.port}"
        symbols = ["BTC", "ETH", "SOL"]

        # One client: a response left mid-stream closes its connection, so each
        # session still has its own.
        client = httpx.AsyncClient(base_url=http, timeout=10)

        async def sse(index: int) -> None:
            params = {"assets": symbols[index % 3]}
            async with client.stream("GET", "/api/v1/stream/prices", params=params) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        return

        async def connect(index: int) -> None:
            request = pb.StreamPricesRequest(symbols=[symbols[index % 3]])
            body = b"\0" + len(request.SerializeToString()).to_bytes(4, "big")
            body += request.SerializeToString()
            frames, response = await read_stream(client, body, "application/connect+proto", 1)
            assert response.status_code == 200 and frames and frames[0][0] == 0

        async def websocket(index: int) -> None:
            async with open_websocket_url(f"{ws}/ws") as conn:
                subscribe = {"type": "subscribe", "symbols": [symbols[index % 3]]}
                await conn.send_message(json.dumps(subscribe))
                while "update" not in await conn.get_message():
                    pass

        async def binance_stream(index: int) -> None:
            name = ["btcusd@trade", "ethusd@bookTicker", "!miniTicker@arr"][index % 3]
            async with open_websocket_url(f"{ws}/ws/{name}") as conn:
                await conn.get_message()

        async with client:
            for one in (sse, connect, websocket, binance_stream):
                await churn(one)
                await wait_for(lambda: traces(service, server, binance) == idle)

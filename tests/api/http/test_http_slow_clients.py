"""HTTP streams (SSE, Connect, gRPC-Web) whose client stops reading are closed, and free their slot.

hypercorn has no write timeout: without a guard, a client whose receive
buffer is full keeps its stream, and its place under ``MAX_SUBSCRIBERS``,
for as long as it keeps the connection open.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import httpx
import pytest
import trio

from mdactors._proto import marketdata_pb2 as pb
from mdactors.api.connect.grpc_web import frame
from mdactors.api.connect.protocol import envelope
from mdactors.app import Service
from tests.conftest import RawGrpc, read_events, running_service, wait_for

SLOW_AFTER = 1.0
#: Fast ticks so a client that does not read fills the socket buffers in well under a second.
STUCK_ENV = {"SLOW_CONSUMER_TIMEOUT": f"{SLOW_AFTER:g}s", "PRICE_UPDATE_INTERVAL": "5ms"}
#: How long after the stream opens its slot must be free: the timeout, plus the
#: time the socket buffers take to fill (~0.1-0.3 s measured) and some slack.
RELEASED_WITHIN = SLOW_AFTER + 2.0


async def stuck_client(service: Service, request: bytes) -> trio.socket.SocketType:
    """A connection that sends ``request`` and never reads: a tiny receive buffer
    (set before connecting, so the window is small from the handshake on)."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    await sock.connect(("127.0.0.1", service.ports["http"]))
    await sock.send(request)
    return sock


def sse_request() -> bytes:
    return b"GET /api/v1/stream/prices HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n"


def connect_request() -> bytes:
    body = envelope(pb.StreamPricesRequest(symbols=["BTC/USD", "ETH/USD"]).SerializeToString())
    head = (
        "POST /marketdata.MarketDataService/StreamPrices HTTP/1.1\r\nHost: test\r\n"
        f"Content-Type: application/connect+proto\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def grpc_web_request() -> bytes:
    body = frame(pb.StreamPricesRequest(symbols=["BTC/USD", "ETH/USD"]).SerializeToString())
    head = (
        "POST /marketdata.MarketDataService/StreamPrices HTTP/1.1\r\nHost: test\r\n"
        f"Content-Type: application/grpc-web+proto\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def lost(service: Service, client_type: str) -> int:
    """Ticks counted as lost because a client of ``client_type`` was disconnected."""
    dropped = service.context.streams.dropped
    return sum(
        count
        for (_, kind, reason), count in dropped.items()
        if kind == client_type and reason == "disconnected"
    )


@pytest.mark.parametrize(
    ("request_bytes", "client_type"),
    [(sse_request, "sse"), (connect_request, "connect"), (grpc_web_request, "grpc-web")],
)
async def test_stream_whose_client_stops_reading_is_disconnected_and_frees_its_slot(
    request_bytes: Callable[[], bytes], client_type: str
) -> None:
    async with running_service(STUCK_ENV) as service:
        streams = service.context.streams
        with trio.fail_after(20):
            sock = await stuck_client(service, request_bytes())
            with sock:
                await wait_for(lambda: streams.active == 1)
                await wait_for(lambda: streams.active == 0, within=RELEASED_WITHIN)
        assert streams.subscribers[("BTC/USD", client_type)] == 0
        assert lost(service, client_type) > 0
        # What went out before the buffers filled was delivered: its latency observed.
        registry = service.context.metrics.registry
        count = registry.get_sample_value(
            "market_data_publication_latency_seconds_count", {"client_type": client_type}
        )
        assert count is not None and count > 0


async def test_http_port_grpc_stream_whose_client_stops_reading_is_ended_and_frees_its_slot() -> (
    None
):
    # gRPC over h2c on the HTTP port: the client's HTTP/2 window (1 KiB) is never
    # reopened, so the server's writes wait on flow control rather than on the socket.
    async with running_service(STUCK_ENV) as service:
        streams = service.context.streams
        request = pb.StreamPricesRequest(symbols=["BTC/USD", "ETH/USD"]).SerializeToString()
        with trio.fail_after(20):
            client = await RawGrpc.connect(service.ports["http"], window=1024)
            async with client.stream:
                stuck = await client.start("/marketdata.MarketDataService/StreamPrices", request)
                await wait_for(lambda: streams.active == 1)
                await wait_for(lambda: streams.active == 0, within=RELEASED_WITHIN)
                # Only that stream was ended (RST_STREAM): the connection still serves.
                await client.wait_reset(stuck)
                get = pb.GetPriceRequest(symbol="BTC/USD").SerializeToString()
                await client.start("/marketdata.MarketDataService/GetPrice", get)
                assert (await client.wait_trailers())[0] == 0
        assert streams.subscribers[("BTC/USD", "grpc-http")] == 0
        assert lost(service, "grpc-http") > 0
        registry = service.context.metrics.registry
        count = registry.get_sample_value(
            "market_data_publication_latency_seconds_count", {"client_type": "grpc-http"}
        )
        assert count is not None and count > 0


@pytest.mark.slow
async def test_sse_client_that_keeps_reading_is_not_disconnected() -> None:
    # Twice the timeout of the other tests: a loaded machine's stall must not look slow.
    patient = {**STUCK_ENV, "SLOW_CONSUMER_TIMEOUT": f"{2 * SLOW_AFTER:g}s"}
    async with running_service(patient) as service:
        streams = service.context.streams
        base = f"http://127.0.0.1:{service.ports['http']}"
        with trio.fail_after(20):
            async with (
                httpx.AsyncClient(base_url=base, timeout=10) as http,
                http.stream("GET", "/api/v1/stream/prices") as response,
            ):
                lines = response.aiter_lines()
                await read_events(lines, 2)
                with trio.move_on_after(4 * SLOW_AFTER):
                    await read_events(lines, 1_000_000)
                assert streams.active == 1
        assert lost(service, "sse") == 0

"""One subscriber per transport: connect, subscribe, hand every tick to a :class:`Tally`.

Each ``*_clients`` context manager prepares what its clients share (gRPC
channels) and yields a ``run(index, tally, connected)`` coroutine function
that serves one subscriber until cancelled. ``connected()`` is called at the
first tick (the snapshot), which ends the subscriber's connect time.

- gRPC: grpc.aio ``StreamPrices`` (asyncio); every ``streams_per_connection``
  subscribers share one HTTP/2 connection (1 = a connection each, like
  independent clients; a local subchannel pool keeps grpc from sharing).
- WebSocket: trio-websocket, ``subscribe`` to the ``ticker`` channel; batch
  frames are unwrapped.
- SSE: ``GET /api/v1/stream/prices`` over a raw trio socket (HTTP/1.0, so the
  body is the event stream itself); ``id: ASSET-SEQ`` gives the sequence,
  the ``timestamp`` member (ms) the publish time.
- The RPC protocols of the HTTP port: ``grpc-http`` is the gRPC client
  above pointed at the HTTP port (h2c); ``connect`` and ``grpc-web``
  ``StreamPrices`` in binary framing over a raw trio socket (HTTP/1.0 as for
  SSE), one message per 5-byte-headed frame until the end frame.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.stats import Tally

if TYPE_CHECKING:
    import trio

__all__ = ["BACKENDS", "ClientRun", "WorkerSpec", "open_clients"]

ClientRun = Callable[[int, Tally, Callable[[], None]], Awaitable[None]]
STREAM_PRICES = "/marketdata.MarketDataService/StreamPrices"
#: The async framework each transport's clients run on.
BACKENDS = {
    "grpc": "asyncio",
    "grpc-http": "asyncio",
    "ws": "trio",
    "sse": "trio",
    "connect": "trio",
    "grpc-web": "trio",
}
#: Content type and end-of-stream flag of the framed HTTP-port protocols.
_FRAMED = {
    "connect": ("application/connect+proto", 0x02),
    "grpc-web": ("application/grpc-web+proto", 0x80),
}


@dataclass(frozen=True)
class WorkerSpec:
    """What one load-generator process runs."""

    transport: str
    host: str
    port: int
    symbols: tuple[str, ...]
    clients: int
    first_client: int = 0
    streams_per_connection: int = 1
    connect_concurrency: int = 100
    connect_timeout: float = 60.0


@asynccontextmanager
async def _grpc_clients(spec: WorkerSpec) -> AsyncIterator[ClientRun]:
    import grpc

    from mdactors._proto import marketdata_pb2 as pb

    request = pb.StreamPricesRequest(symbols=list(spec.symbols)).SerializeToString()
    options = [("grpc.use_local_subchannel_pool", 1)]
    per = max(1, spec.streams_per_connection)
    target = f"{spec.host}:{spec.port}"
    channels = [
        grpc.aio.insecure_channel(target, options=options)
        for _ in range(math.ceil(spec.clients / per))
    ]

    async def run(index: int, tally: Tally, connected: Callable[[], None]) -> None:
        method = channels[(index - spec.first_client) // per].unary_stream(
            STREAM_PRICES,
            request_serializer=lambda raw: raw,
            response_deserializer=pb.PriceUpdate.FromString,
        )
        first = True
        async for update in method(request):
            if first:
                first = False
                connected()
            tally.observe(index, update.key, update.sequence, update.timestamp_ns)

    try:
        yield run
    finally:
        for channel in channels:
            await channel.close(grace=None)


@asynccontextmanager
async def _ws_clients(spec: WorkerSpec) -> AsyncIterator[ClientRun]:
    from trio_websocket import open_websocket_url

    url = f"ws://{spec.host}:{spec.port}/ws"
    subscribe = json.dumps({"type": "subscribe", "symbols": list(spec.symbols)})

    async def run(index: int, tally: Tally, connected: Callable[[], None]) -> None:
        first = True
        async with open_websocket_url(url) as ws:
            await ws.send_message(subscribe)
            while True:
                frame = json.loads(await ws.get_message())
                batch = frame["messages"] if frame.get("type") == "batch" else (frame,)
                for message in batch:
                    if message.get("channel") != "ticker":
                        continue
                    if first:
                        first = False
                        connected()
                    tally.observe(index, message["symbol"], message["seq"], message["ts"])

    yield run


@asynccontextmanager
async def _sse_clients(spec: WorkerSpec) -> AsyncIterator[ClientRun]:
    import trio

    assets = urllib.parse.quote(",".join(spec.symbols), safe=",")
    request = (
        f"GET /api/v1/stream/prices?assets={assets} HTTP/1.0\r\n"
        f"Host: {spec.host}:{spec.port}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()

    async def run(index: int, tally: Tally, connected: Callable[[], None]) -> None:
        first = True
        stream = await trio.open_tcp_stream(spec.host, spec.port)
        async with stream:
            await stream.send_all(request)
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                buffer += await _receive(stream)
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                raise RuntimeError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            while True:
                *events, buffer = buffer.split(b"\n\n")
                for event in events:
                    parsed = _price_event(event)
                    if parsed is None:
                        continue
                    if first:
                        first = False
                        connected()
                    tally.observe(index, *parsed)
                buffer += await _receive(stream)

    yield run


@asynccontextmanager
async def _framed_clients(spec: WorkerSpec) -> AsyncIterator[ClientRun]:
    import trio

    from mdactors._proto import marketdata_pb2 as pb

    content_type, end_flag = _FRAMED[spec.transport]
    message = pb.StreamPricesRequest(symbols=list(spec.symbols)).SerializeToString()
    body = b"\x00" + len(message).to_bytes(4, "big") + message
    request = (
        f"POST {STREAM_PRICES} HTTP/1.0\r\nHost: {spec.host}:{spec.port}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body

    async def run(index: int, tally: Tally, connected: Callable[[], None]) -> None:
        first = True
        stream = await trio.open_tcp_stream(spec.host, spec.port)
        async with stream:
            await stream.send_all(request)
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                buffer += await _receive(stream)
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                raise RuntimeError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            while True:
                while len(buffer) >= 5 and len(buffer) >= 5 + int.from_bytes(buffer[1:5], "big"):
                    size = int.from_bytes(buffer[1:5], "big")
                    flags, data, buffer = buffer[0], buffer[5 : 5 + size], buffer[5 + size :]
                    if flags & end_flag:
                        raise ConnectionError(f"the stream ended: {data[:200]!r}")
                    update = pb.PriceUpdate.FromString(data)
                    if first:
                        first = False
                        connected()
                    tally.observe(index, update.key, update.sequence, update.timestamp_ns)
                buffer += await _receive(stream)

    yield run


async def _receive(stream: trio.abc.ReceiveStream) -> bytes:
    data = await stream.receive_some(65536)
    if not data:
        raise ConnectionError("the server closed the stream")
    return data


def _price_event(event: bytes) -> tuple[str, int, int] | None:
    """``(asset, seq, ts_ns)`` of an SSE ``price`` event, ``None`` for any other event."""
    fields = dict(line.split(b": ", 1) for line in event.split(b"\n") if b": " in line)
    if fields.get(b"event") != b"price":
        return None
    asset, seq = fields[b"id"].decode().rsplit("-", 1)
    return asset, int(seq), json.loads(fields[b"data"])["timestamp"] * 1_000_000


_OPENERS = {
    "grpc": _grpc_clients,
    "grpc-http": _grpc_clients,
    "ws": _ws_clients,
    "sse": _sse_clients,
    "connect": _framed_clients,
    "grpc-web": _framed_clients,
}


def open_clients(spec: WorkerSpec) -> AbstractAsyncContextManager[ClientRun]:
    """The client factory of ``spec.transport`` (an async context manager)."""
    return _OPENERS[spec.transport](spec)

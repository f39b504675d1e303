"""Churning clients for ``bench soak``: open a stream, read 3–20 messages, leave, again.

One process per transport (:func:`churn_main`), so a client-side stall of
one transport does not slow the others. Each counts the streams it
completed and the ones that failed in shared counters the parent samples.

- ``grpc``: grpc.aio ``StreamPrices`` on ``channels`` long-lived channels,
  ``concurrency`` calls at once, each cancelled after 3–20 messages and
  reopened on the same channel (a UI switching symbols).
- ``connect``: Connect ``StreamPrices`` (binary envelopes) over httpx.
- ``sse``: ``GET /api/v1/stream/prices`` over a raw socket (HTTP/1.0).
- ``ws``: a WebSocket session that subscribes, reads updates and closes.
- ``binance``: a Binance ``/ws/<symbol>@trade`` stream, read then closed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event

__all__ = ["TRANSPORTS", "ChurnSpec", "churn_main"]

TRANSPORTS = ("grpc", "connect", "sse", "ws", "binance")
STREAM_PRICES = "/marketdata.MarketDataService/StreamPrices"
#: Longest one stream may take before it counts as failed.
STREAM_TIMEOUT_S = 30.0
_RETRY_PAUSE_S = 0.2


@dataclass(frozen=True)
class ChurnSpec:
    """What one churn process runs."""

    transport: str
    host: str
    port: int
    symbol: str
    concurrency: int
    channels: int = 1
    seed: int = 0
    min_messages: int = 3
    max_messages: int = 20


@dataclass
class Counters:
    """Shared with the parent: streams completed and failed."""

    completed: Synchronized
    failed: Synchronized

    def done(self) -> None:
        with self.completed.get_lock():
            self.completed.value += 1

    def fail(self) -> None:
        with self.failed.get_lock():
            self.failed.value += 1


def churn_main(spec: ChurnSpec, completed: Synchronized, failed: Synchronized, stop: Event) -> None:
    """Process entry point: churn until ``stop`` is set."""
    counters = Counters(completed, failed)
    if spec.transport == "grpc":
        import asyncio

        asyncio.run(_grpc(spec, counters, stop))
    else:
        import trio

        trio.run(_trio_churn, spec, counters, stop)


async def _grpc(spec: ChurnSpec, counters: Counters, stop: Event) -> None:
    import asyncio

    import grpc

    from mdactors._proto import marketdata_pb2 as pb

    request = pb.StreamPricesRequest(symbols=[spec.symbol]).SerializeToString()
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(f"{spec.host}:{spec.port}", options=options)
        for _ in range(spec.channels)
    ]
    rng = random.Random(spec.seed)

    async def loop(index: int) -> None:
        method = channels[index % len(channels)].unary_stream(
            STREAM_PRICES, request_serializer=bytes, response_deserializer=bytes
        )
        while not stop.is_set():
            wanted = rng.randint(spec.min_messages, spec.max_messages)
            call = method(request, timeout=STREAM_TIMEOUT_S)
            try:
                seen = 0
                async for _ in call:
                    seen += 1
                    if seen >= wanted:
                        break
                call.cancel()
                if seen >= wanted:
                    counters.done()
                else:
                    counters.fail()
            except grpc.aio.AioRpcError:
                counters.fail()
                await asyncio.sleep(_RETRY_PAUSE_S)

    try:
        await asyncio.gather(*(loop(index) for index in range(spec.concurrency)))
    finally:
        for channel in channels:
            await channel.close(grace=None)


async def _trio_churn(spec: ChurnSpec, counters: Counters, stop: Event) -> None:
    import httpx
    import trio

    rng = random.Random(spec.seed)
    async with httpx.AsyncClient(base_url=f"http://{spec.host}:{spec.port}") as http:
        one = _TRIO_STREAMS[spec.transport]

        async def loop() -> None:
            while not stop.is_set():
                wanted = rng.randint(spec.min_messages, spec.max_messages)
                try:
                    with trio.fail_after(STREAM_TIMEOUT_S):
                        await one(spec, http, wanted)
                    counters.done()
                except Exception:  # any failure of one stream is counted, then the next
                    counters.fail()
                    await trio.sleep(_RETRY_PAUSE_S)

        async with trio.open_nursery() as nursery:
            for _ in range(spec.concurrency):
                nursery.start_soon(loop)


async def _connect_stream(spec: ChurnSpec, http: object, wanted: int) -> None:
    from mdactors._proto import marketdata_pb2 as pb

    message = pb.StreamPricesRequest(symbols=[spec.symbol]).SerializeToString()
    body = b"\0" + len(message).to_bytes(4, "big") + message
    headers = {"Content-Type": "application/connect+proto"}
    buffer, seen = b"", 0
    async with http.stream("POST", STREAM_PRICES, content=body, headers=headers) as response:  # type: ignore[attr-defined]
        if response.status_code != 200:
            raise RuntimeError(f"connect answered {response.status_code}")
        async for chunk in response.aiter_bytes():
            buffer += chunk
            while len(buffer) >= 5 and len(buffer) >= 5 + int.from_bytes(buffer[1:5], "big"):
                if buffer[0] & 0x02:
                    raise RuntimeError("connect stream ended early")
                buffer = buffer[5 + int.from_bytes(buffer[1:5], "big") :]
                seen += 1
            if seen >= wanted:
                return
    raise RuntimeError("connect stream closed early")


async def _sse_stream(spec: ChurnSpec, http: object, wanted: int) -> None:
    import trio

    request = (
        f"GET /api/v1/stream/prices?assets={spec.symbol.split('/')[0]} HTTP/1.0\r\n"
        f"Host: {spec.host}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    async with await trio.open_tcp_stream(spec.host, spec.port) as stream:
        await stream.send_all(request)
        marker = b"event: price"
        seen, tail, first = 0, b"", True
        while seen < wanted:
            data = await stream.receive_some(65536)
            if not data:
                raise RuntimeError("sse stream closed early")
            if first:
                first = False
                status = data.split(b"\r\n", 1)[0]
                if b" 200 " not in status:
                    raise RuntimeError(status.decode(errors="replace"))
            window = tail + data
            seen += window.count(marker)
            tail = window[-(len(marker) - 1) :]  # too short to hold a whole marker


async def _ws_stream(spec: ChurnSpec, http: object, wanted: int) -> None:
    from trio_websocket import open_websocket_url

    async with open_websocket_url(f"ws://{spec.host}:{spec.port}/ws") as ws:
        await ws.send_message(json.dumps({"type": "subscribe", "symbols": [spec.symbol]}))
        seen = 0
        while seen < wanted:
            frame = json.loads(await ws.get_message())
            batch = frame["messages"] if frame.get("type") == "batch" else (frame,)
            seen += sum(1 for message in batch if message.get("channel") == "ticker")


async def _binance_stream(spec: ChurnSpec, http: object, wanted: int) -> None:
    from trio_websocket import open_websocket_url

    name = spec.symbol.replace("/", "").lower() + "@trade"
    async with open_websocket_url(f"ws://{spec.host}:{spec.port}/ws/{name}") as ws:
        for _ in range(wanted):
            await ws.get_message()


_TRIO_STREAMS: dict[str, Callable[[ChurnSpec, object, int], Awaitable[None]]] = {
    "connect": _connect_stream,
    "sse": _sse_stream,
    "ws": _ws_stream,
    "binance": _binance_stream,
}

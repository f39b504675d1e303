"""Binance streams (spot and USD-M futures) on the stream outlet, end to end.

Caught-up sessions are served by their Topics' fan-outs (one render per event
and rendering, shared by every session of that rendering); a client that
stops reading is closed after ``SLOW_CONSUMER_TIMEOUT`` by the outlet's one
decision, its slot freed and what it will never get counted ``disconnected``;
one that reads slowly loses the oldest events (``conflated``) but stays; one
that keeps reading is never closed. Each test runs its own
:class:`~mdactors.api.binance.streams.BinanceStreams` on the service's context,
so its sessions and fan-outs can be looked at; the metrics are the service's.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from itertools import pairwise
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from mdactors.api.binance.protocol import FUTURES_KEY
from mdactors.api.binance.streams import MAX_EVENTS_PER_TOPIC, BinanceStreams
from mdactors.api.ws.server import WsServer
from mdactors.app import Service
from tests.conftest import metric_samples, receive, reply_to, running_service, send, wait_for

pytestmark = pytest.mark.timeout(45)

SPOT = ("BTC/USD", "/stream?streams=btcusd@depth@100ms/btcusd@trade")
FUTURES = ("BTC/USD-PERP", "/fstream?streams=btcusd@depth@100ms/btcusd@markPrice@1s")
SURFACES = pytest.mark.parametrize(("key", "path"), [SPOT, FUTURES], ids=["spot", "futures"])

SLOW_AFTER = 1.0
#: Fast ticks and a small server send buffer: a client that stops reading blocks
#: the server's writes within a few events.
STUCK_ENV = {
    "SLOW_CONSUMER_TIMEOUT": f"{SLOW_AFTER:g}s",
    "PRICE_UPDATE_INTERVAL": "5ms",
    "WS_SEND_BUFFER_BYTES": "4096",
}
#: How long after the session opens its slot must be free: the timeout, the time
#: the buffers take to fill, and slack for a loaded machine.
RELEASED_WITHIN = SLOW_AFTER + 3.0


@asynccontextmanager
async def own_binance(service: Service) -> AsyncIterator[BinanceStreams]:
    """Binance streams on a WebSocket server of their own over the service's context
    (``service.ports["ws"]`` points at it)."""
    server = WsServer(service.context)
    streams = BinanceStreams(server)
    async with trio.open_nursery() as nursery:
        await nursery.start(streams.run)
        service.ports["ws"] = await nursery.start(server.run)
        yield streams
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def binance_client(
    service: Service, path: str, receive_buffer: int = 0
) -> AsyncIterator[WebSocketConnection]:
    """A trio-websocket client of ``path``; with ``receive_buffer``, its socket's
    receive buffer is that small from the handshake on, and the client reads only
    when the test asks it to (trio-websocket queues one message, then stops reading)."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    await sock.connect(("127.0.0.1", service.ports["ws"]))
    stream = trio.SocketStream(sock)
    async with trio.open_nursery() as nursery:
        ws = await wrap_client_stream(nursery, stream, "127.0.0.1", path, message_queue_size=1)
        try:
            yield ws
        finally:
            await stream.aclose()
            nursery.cancel_scope.cancel()


def dropped(samples: dict[Any, float], key: str, reason: str) -> float:
    labels = (("client_type", "binance"), ("reason", reason), ("symbol", key))
    return samples.get(("market_data_dropped_updates_total", labels), 0.0)


def latency_count(samples: dict[Any, float]) -> float:
    name = "market_data_publication_latency_seconds_count"
    return samples.get((name, (("client_type", "binance"),)), 0.0)


def subscribers(samples: dict[Any, float], key: str) -> float:
    labels = (("client_type", "binance"), ("symbol", key))
    return samples.get(("market_data_subscriber_count", labels), 0.0)


async def read_until(
    ws: WebSocketConnection, done: Callable[[list[Any]], bool], within: float = 10.0
) -> list[Any]:
    """Read events until ``done(events so far)``; return them."""
    events: list[Any] = []
    with trio.fail_after(within):
        while not done(events):
            events.append(await receive(ws))
    return events


def depth_ids(events: list[Any]) -> list[tuple[int, int]]:
    """``(U, u)`` of the depth events among ``events`` (raw or combined)."""
    data = [event.get("data", event) for event in events]
    return [(e["U"], e["u"]) for e in data if e.get("e") == "depthUpdate"]


def contiguous(ids: list[tuple[int, int]]) -> bool:
    return all(after[0] == before[1] + 1 for before, after in pairwise(ids))


# --------------------------------------------------------------------------- the fast path


@SURFACES
async def test_caught_up_sessions_share_their_topics_fan_outs(key: str, path: str) -> None:
    async with running_service() as service, own_binance(service) as binance:
        async with binance_client(service, path) as first, binance_client(service, path) as second:
            fan_outs = binance.broadcasts.by_key
            await wait_for(lambda: key in fan_outs and fan_outs[key].writes >= 20)
            topics = {key, FUTURES_KEY} if key.endswith("-PERP") else {key}
            assert set(fan_outs) == topics, "each followed Topic has its fan-out"
            for topic_key in topics:
                assert fan_outs[topic_key].members == binance.sessions
            renderings = {session.rendering() for session in binance.sessions}
            assert len(renderings) == 1, "both sessions render alike"
            assert set(fan_outs[key].groups) == renderings, "one render per event for both"
            received = [
                await read_until(ws, lambda e: len(depth_ids(e)) >= 8) for ws in (first, second)
            ]
        for events in received:
            assert contiguous(depth_ids(events)), "no depth event lost or repeated"
        by_id = [
            {(e["data"]["U"], e["data"]["u"]): e for e in events if e["data"]["e"] == "depthUpdate"}
            for events in received
        ]
        common = by_id[0].keys() & by_id[1].keys()
        assert common, "the two sessions got the same events"
        assert all(by_id[0][ids] == by_id[1][ids] for ids in common)


async def test_a_subscribe_on_a_fast_session_takes_effect_at_once() -> None:
    """The session's rendering changes with its streams: it leaves its group and
    comes back in the new one, with the new stream's events; the depth chain goes on."""
    async with (
        running_service() as service,
        own_binance(service) as binance,
        binance_client(service, "/ws/btcusd@depth@100ms") as ws,
    ):
        fan_outs = binance.broadcasts.by_key
        await wait_for(lambda: "BTC/USD" in fan_outs and fan_outs["BTC/USD"].writes >= 3)
        await send(ws, "SUBSCRIBE", ["btcusd@trade"], 1)
        before = await read_until(ws, lambda e: e[-1:] == [{"result": None, "id": 1}])
        after = await read_until(ws, lambda e: len(depth_ids(e)) >= 3)
        assert any(event.get("e") == "trade" for event in after)
        assert contiguous(depth_ids(before + after))
        [session] = binance.sessions
        await wait_for(lambda: set(fan_outs["BTC/USD"].groups) >= {session.rendering()})
        await send(ws, "LIST_SUBSCRIPTIONS", [], 2)
        reply = await reply_to(ws, 2)
        assert reply == {"result": ["btcusd@depth@100ms", "btcusd@trade"], "id": 2}


# --------------------------------------------------------------------------- slow clients


@SURFACES
async def test_a_client_that_stops_reading_is_closed_and_frees_its_slot(key: str, path: str):
    async with running_service(STUCK_ENV) as service, own_binance(service) as binance:
        streams = service.context.streams
        with trio.fail_after(20):
            async with binance_client(service, path, receive_buffer=1024) as stuck:
                await wait_for(lambda: streams.active == 1)
                opened = trio.current_time()
                assert subscribers(await metric_samples(service), key) == 1
                await wait_for(lambda: streams.active == 0, within=RELEASED_WITHIN)
                # Its writes blocked after it opened: not closed before the timeout.
                assert trio.current_time() - opened >= SLOW_AFTER
                # What the kernel held is still readable; then the close (or the reset
                # of a connection whose frame was cut).
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await stuck.get_message()
                assert closed.value.reason.code in (1006, 1008)
        assert not binance.sessions
        assert all(not fan_out.members for fan_out in binance.broadcasts.by_key.values())
        samples = await metric_samples(service)
        assert subscribers(samples, key) == 0
        assert dropped(samples, key, "disconnected") > 0
        assert latency_count(samples) > 0, "what went out before the buffers filled"


@SURFACES
async def test_a_client_that_reads_slowly_loses_the_oldest_events_and_stays(
    key: str, path: str
) -> None:
    # A pause well within the timeout: the blocked write completes once it reads again.
    patient = {**STUCK_ENV, "SLOW_CONSUMER_TIMEOUT": "15s"}
    async with running_service(patient) as service, own_binance(service) as binance:
        streams, feed = service.context.streams, binance.feeds[key].topic
        async with binance_client(service, path, receive_buffer=4096) as slow:
            events = await read_until(slow, lambda e: len(depth_ids(e)) >= 2)
            # Far more of the feed's events than a session takes of one Topic at once
            # (256) while it does not read: once it reads, the next write carries the
            # newest 256, the older ones conflated (depth events among them).
            paused_at = feed.published
            await wait_for(lambda: feed.published >= paused_at + 2 * MAX_EVENTS_PER_TOPIC, 15)
            conflated = (key, "binance", "conflated")
            events += await read_until(slow, lambda _: streams.dropped[conflated] > 0, 20)
            events += await read_until(slow, lambda e: len(depth_ids(e)) >= 3)
            ids = depth_ids(events)
            assert all(after[0] > before[1] for before, after in pairwise(ids)), "in order"
            assert not contiguous(ids), "the gap a client resyncs on"
            assert streams.active == 1, "a slow write that completed keeps the session"
        samples = await metric_samples(service)
        assert dropped(samples, key, "conflated") > 0
        assert dropped(samples, key, "disconnected") == 0
        assert latency_count(samples) > 0


@pytest.mark.slow
@SURFACES
async def test_a_client_that_keeps_reading_is_not_disconnected(key: str, path: str) -> None:
    # Twice the timeout of the other tests: a loaded machine's stall must not look slow.
    patient = {**STUCK_ENV, "SLOW_CONSUMER_TIMEOUT": f"{2 * SLOW_AFTER:g}s"}
    async with running_service(patient) as service, own_binance(service) as binance:
        streams = service.context.streams
        async with binance_client(service, path) as reader:
            with trio.move_on_after(4 * SLOW_AFTER):
                await read_until(reader, lambda _: False, within=60)
            assert streams.active == 1
            assert binance.broadcasts.by_key[key].writes > 0, "served by the fast path"
        samples = await metric_samples(service)
        assert dropped(samples, key, "disconnected") == 0
        assert latency_count(samples) > 0


@SURFACES
async def test_the_drain_closes_fast_sessions_with_going_away(key: str, path: str) -> None:
    """A session parked on the fast path waits on no Subscription: the drain's 1001
    reaches it all the same (the service's own Binance streams, as in production)."""
    async with running_service() as service, binance_client(service, path) as ws:
        await read_until(ws, lambda e: len(depth_ids(e)) >= 3)
        service.context.lifecycle.begin_drain()
        with pytest.raises(ConnectionClosed) as closed, trio.fail_after(5):
            while True:
                await ws.get_message()
        assert closed.value.reason.code == 1001
        assert closed.value.reason.reason == "server shutting down"

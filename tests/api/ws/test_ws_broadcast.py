"""The WebSocket fan-out fast path: frames, caught-up sessions, partly written frames."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketConnection
from wsproto.frame_protocol import FrameProtocol, Opcode

from mdactors.api.ws.broadcast import text_frame
from mdactors.api.ws.server import WsServer
from mdactors.api.ws.session import SendGate
from mdactors.app import Service
from mdactors.engine.fanout import StreamFanOut
from tests.conftest import Client, connect, running_service, small_window_client, unwrap, wait_for

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_text_frame_is_one_final_unmasked_text_frame(size: int) -> None:
    payload = b"x" * size
    parser = FrameProtocol(client=True, extensions=[])
    parser.receive_bytes(text_frame(payload))
    [frame] = list(parser.received_frames())
    assert frame.opcode is Opcode.TEXT
    assert frame.message_finished
    assert frame.payload == payload.decode()


@asynccontextmanager
async def own_ws_server(service: Service) -> AsyncIterator[WsServer]:
    """A second WebSocket server on the service's context, so tests can see its broadcasters."""
    server = WsServer(service.context)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        yield server
        nursery.cancel_scope.cancel()


def broadcaster(server: WsServer, key: str) -> StreamFanOut[Any]:
    return server.broadcasts.by_key[key]


async def test_caught_up_sessions_are_served_by_the_fast_path() -> None:
    async with running_service() as service, own_ws_server(service) as server:
        service.ports["ws"] = server.port
        async with connect(service) as first, connect(service) as second:
            for client in (first, second):
                await client.request({"type": "subscribe", "symbols": ["BTC"]}, "subscribed")
            for client in (first, second):
                seqs = [(await client.next_of("update"))["seq"] for _ in range(20)]
                assert seqs == list(range(seqs[0], seqs[0] + 20)), "no tick lost or repeated"
            fast = broadcaster(server, "BTC/USD")
            assert fast.members == server.sessions
            # 40 updates; under load, one frame carries several and a session that fell
            # behind is served by its own task, so only "many" is certain.
            assert fast.writes >= 10, "updates were written by the fast path"
            # Same channels: one rendering, its frames rendered once per pass for both.
            await wait_for(lambda: sum(len(group.members) for group in fast.groups.values()) == 2)
            assert [len(group.members) for group in fast.groups.values() if group.members] == [2]


async def test_a_session_following_several_symbols_uses_its_own_writer() -> None:
    async with running_service() as service, own_ws_server(service) as server:
        service.ports["ws"] = server.port
        async with connect(service) as client:
            await client.request({"type": "subscribe", "symbols": ["BTC", "ETH"]}, "subscribed")
            await client.next_of("update")
            assert server.broadcasts.by_key == {}


@asynccontextmanager
async def big_frame_subscriber(
    env: dict[str, str],
) -> AsyncIterator[tuple[Service, WsServer, trio.Nursery, WebSocketConnection]]:
    """Fast ticks, a small kernel buffer, and a small-window client subscribed to
    BTC's ticker and 100-level book (~8 KB frames)."""
    env = {"PRICE_UPDATE_INTERVAL": "5ms", "WS_SEND_BUFFER_BYTES": "4096", **env}
    subscribe = {"type": "subscribe", "symbols": ["BTC"], "channels": ["ticker", "book:100"]}
    async with (
        running_service(env) as service,
        own_ws_server(service) as server,
        trio.open_nursery() as nursery,
        small_window_client(server.port, nursery) as ws,
    ):
        await ws.send_message(json.dumps(subscribe))
        yield service, server, nursery, ws
        nursery.cancel_scope.cancel()


async def test_a_partly_written_frame_is_finished_before_anything_else() -> None:
    async with big_frame_subscriber({}) as (service, server, nursery, ws):
        with trio.fail_after(5):  # snapshots sent by the session's writer, then updates
            while not (fast := server.broadcasts.by_key.get("BTC/USD")) or fast.writes == 0:
                await ws.get_message()
        # Big frames from the fast path, and nobody reads: a write is only partly taken (or
        # not at all), and the session's writer owes it, holding the connection's send gate.
        [session] = fast.members
        await wait_for(session.gate.locked)
        reader = session.subscription.readers["BTC/USD"]
        await wait_for(lambda: reader.lag > session.take_limit)
        # A ping now must wait for the rest of the frame: its pong comes whole, after it.
        ponged = trio.Event()

        async def ping() -> None:
            await ws.ping(b"behind")
            ponged.set()

        nursery.start_soon(ping)
        with trio.fail_after(10):
            seqs: list[int] = []
            while len(seqs) < 50:
                for message in unwrap(await ws.get_message()):
                    if message["type"] == "update" and message["channel"] == "ticker":
                        seqs.append(message["seq"])
        assert seqs == sorted(seqs), "every frame parsed, in order"
        with trio.fail_after(5):
            await ponged.wait()
        # Behind by more than a frame holds, it lost the oldest ticks but stayed with the
        # fan-out (served by it again once caught up).
        dropped = service.context.streams.dropped
        assert dropped[("BTC/USD", "ws", "conflated")] > 0
        assert fast.members == {session}


async def test_a_client_that_stops_reading_is_closed_and_the_lock_released() -> None:
    env = {
        "PRICE_UPDATE_INTERVAL": "5ms",
        "WS_SEND_BUFFER_BYTES": "4096",
        "SLOW_CONSUMER_TIMEOUT": "500ms",
    }
    async with running_service(env) as service, own_ws_server(service) as server:
        service.ports["ws"] = server.port
        streams = service.context.streams
        async with (
            trio.open_nursery() as nursery,
            connect(service) as steady,
            small_window_client(server.port, nursery) as stalled,
        ):
            await steady.request({"type": "subscribe", "symbols": ["BTC"]}, "subscribed")
            subscribe = {"type": "subscribe", "symbols": ["BTC"], "channels": ["book:100"]}
            await stalled.send_message(json.dumps(subscribe))
            await wait_for(lambda: streams.subscribers[("BTC/USD", "ws")] == 2)
            seqs = await collect_updates(steady, until=lambda: len(server.sessions) == 1)
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "steady client: no gap"
            with pytest.raises(ConnectionClosed) as closed, trio.fail_after(10):
                while True:
                    await stalled.get_message()
            assert closed.value.reason.code in (1006, 1008)
            fast = broadcaster(server, "BTC/USD")
            assert fast.members == server.sessions, "the stalled session left the fan-out"
            assert streams.subscribers[("BTC/USD", "ws")] == 1
            more = [(await steady.next_of("update"))["seq"] for _ in range(5)]
            assert more == list(range(more[0], more[0] + 5)), "the steady client goes on"
            nursery.cancel_scope.cancel()


async def collect_updates(client: Client, until: object) -> list[int]:
    """The seqs of ``client``'s ticker updates, read until ``until()`` (at least 30)."""
    seqs: list[int] = []
    with trio.fail_after(15):
        while not (until() and len(seqs) >= 30):  # type: ignore[operator]
            message = await client.next()
            if message["type"] == "update":
                seqs.append(message["seq"])
    return seqs


def latency_count(service: Service) -> float:
    registry = service.context.metrics.registry
    count = registry.get_sample_value(
        "market_data_publication_latency_seconds_count", {"client_type": "ws"}
    )
    return count or 0.0


async def test_frames_written_in_several_pieces_count_as_sent() -> None:
    """Latency is observed and the heartbeat timer reset for owed frames too."""
    async with big_frame_subscriber({"WS_HEARTBEAT_INTERVAL": "1s"}) as (service, server, _, ws):
        with trio.fail_after(5):  # snapshots sent by the session's writer, then updates
            while not (fast := server.broadcasts.by_key.get("BTC/USD")) or fast.writes == 0:
                await ws.get_message()
        observed_before = latency_count(service)
        [session] = fast.members
        await wait_for(session.gate.locked)  # not reading: a frame goes out in pieces
        frames = heartbeats = 0
        with trio.fail_after(10):
            reading_until = trio.current_time() + 2.0
            while trio.current_time() < reading_until:
                message = json.loads(await ws.get_message())
                frames += 1
                heartbeats += message["type"] == "heartbeat"
                await trio.sleep(0.004)  # a client reading a little slower than the feed
        assert heartbeats == 0, "no heartbeat while updates flow"
        assert latency_count(service) - observed_before >= 0.9 * frames


async def test_a_failure_serving_one_session_ends_that_session_only() -> None:
    async with running_service() as service, own_ws_server(service) as server:
        service.ports["ws"] = server.port
        async with connect(service) as victim, connect(service) as other:
            for client in (victim, other):
                await client.request({"type": "subscribe", "symbols": ["BTC"]}, "subscribed")
                await client.next_of("update")
            [broken] = [s for s in server.sessions if s.ws.remote.port == victim.ws.local.port]

            def fail(key: str, items: list[Any], messages: list[bytes]) -> None:
                raise RuntimeError("a rendering bug")

            broken._updates = fail  # type: ignore[method-assign]
            with pytest.raises(ConnectionClosed), trio.fail_after(5):
                while True:
                    await victim.next()
            seqs = [(await other.next_of("update"))["seq"] for _ in range(5)]
            assert seqs == list(range(seqs[0], seqs[0] + 5))
            await wait_for(lambda: len(server.sessions) == 1)


async def test_the_send_gate_goes_to_its_waiters_in_turn() -> None:
    """A writer with frame after frame to send cannot keep trio-websocket's pong out."""
    acquired: list[str] = []
    gate = SendGate(lambda: acquired.append("on_acquire"))
    order: list[str] = []
    await gate.acquire()

    async def pong() -> None:
        async with gate:
            order.append("pong")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pong)
        await trio.testing.wait_all_tasks_blocked()
        assert gate.locked() and order == []
        gate.release()  # handed to the waiting pong
        await gate.acquire()  # the writer's next frame waits its turn
        order.append("writer")
        gate.release()
    assert order == ["pong", "writer"]
    assert acquired == ["on_acquire"] * 3, "each holder leaves the fast path first"
    assert not gate.locked()
    with pytest.raises(trio.WouldBlock):
        gate.acquire_nowait()
        gate.acquire_nowait()

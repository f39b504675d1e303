"""The WebSocket server against a real service on port 0, with trio-websocket clients."""

from __future__ import annotations

import json

import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    open_websocket_url,
)

from mdactors.app import Service
from tests.conftest import Message, connect, running_service, small_window_client, wait_for


async def test_subscribe_acknowledges_then_sends_one_snapshot_per_channel(
    service: Service,
) -> None:
    channels = ["ticker", "trades", "candles:1m", "book:5"]
    async with connect(service) as client:
        await client.send(
            {"type": "subscribe", "id": 1, "symbols": ["btc-usd", "ETH"], "channels": channels}
        )
        ack = await client.next_of("subscribed")
        assert ack["id"] == 1
        assert ack["subscriptions"] == [
            {"symbol": "btc-usd", "key": "BTC/USD", "channels": channels},
            {"symbol": "ETH", "key": "ETH/USD", "channels": channels},
        ]
        snapshots = {}
        for _ in range(8):
            message = await client.next()
            assert message["type"] == "snapshot", message
            snapshots[(message["symbol"], message["channel"])] = message
        assert set(snapshots) == {(key, ch) for key in ("BTC/USD", "ETH/USD") for ch in channels}
        for message in snapshots.values():
            assert message["seq"] >= 1 and message["ts"] > 0
        book = snapshots[("BTC/USD", "book:5")]["data"]
        assert len(book["bids"]) == len(book["asks"]) == 5
        assert book["bids"][0][0] < book["asks"][0][0]
        candle = snapshots[("ETH/USD", "candles:1m")]["data"]
        assert candle["interval"] == "1m" and candle["low"] <= candle["close"] <= candle["high"]
        assert isinstance(snapshots[("BTC/USD", "trades")]["data"], list), "recent trades"


async def test_ticker_updates_continue_the_snapshot_without_gaps(service: Service) -> None:
    async with connect(service) as client:
        await client.send({"type": "subscribe", "symbols": ["BTC/USD", "SOL-USD"]})
        await client.next_of("subscribed")
        last: dict[str, int] = {}
        with trio.fail_after(10):
            while len(last) < 2 or min(last.values()) < 10:
                message = await client.next()
                if message["type"] not in ("snapshot", "update"):
                    continue
                assert message["channel"] == "ticker"
                assert message["ts"] > 0 and message["data"]["price"] > 0
                symbol = message["symbol"]
                if symbol in last:
                    assert message["type"] == "update"
                    assert message["seq"] == last[symbol] + 1, "no gap, no repeat"
                else:
                    assert message["type"] == "snapshot"
                last[symbol] = message["seq"]


async def test_every_channel_keeps_sending_updates(service: Service) -> None:
    channels = ["trades", "candles:5m", "book"]
    async with connect(service) as client:
        await client.send({"type": "subscribe", "symbols": ["ETH/USD"], "channels": channels})
        await client.next_of("subscribed")
        seen: dict[str, list[Message]] = {channel: [] for channel in channels}
        with trio.fail_after(10):
            while min(len(updates) for updates in seen.values()) < 3:
                message = await client.next()
                if message["type"] == "update":
                    seen[message["channel"]].append(message)
        for updates in seen.values():
            seqs = [message["seq"] for message in updates]
            assert seqs == sorted(set(seqs))
        assert len(seen["book"][0]["data"]["bids"]) == 10
        trade = seen["trades"][0]["data"][0]
        assert trade["side"] in ("buy", "sell") and trade["quantity"] > 0
        assert seen["candles:5m"][-1]["data"]["interval"] == "5m"


async def test_unsubscribe_stops_that_symbol_only(service: Service) -> None:
    async with connect(service) as client:
        await client.request({"type": "subscribe", "symbols": ["BTC", "ETH"]}, "subscribed")
        reply = await client.request(
            {"type": "unsubscribe", "symbols": ["eth-usd"], "id": "u"}, "unsubscribed"
        )
        assert reply == {
            "type": "unsubscribed",
            "id": "u",
            "subscriptions": [{"symbol": "ETH", "key": "ETH/USD", "channels": ["ticker"]}],
        }
        listed = await client.request({"type": "list"}, "subscriptions")
        assert [row["key"] for row in listed["subscriptions"]] == ["BTC/USD"]
        btc_updates = 0
        with trio.fail_after(10):
            while btc_updates < 5:
                message = await client.next()
                assert message.get("symbol") != "ETH/USD"
                btc_updates += message["type"] == "update"
        assert service.context.streams.subscribers[("ETH/USD", "ws")] == 0


async def test_ping_gets_pong_with_id(service: Service) -> None:
    async with connect(service) as client:
        pong = await client.request({"type": "ping", "id": 42}, "pong")
        assert pong["id"] == 42 and pong["ts"] > 0


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ("hello", "invalid_json"),
        (b"\x00\x01", "binary_not_supported"),
        ({"type": "teleport"}, "unknown_type"),
        ({"type": "subscribe", "symbols": ["DOGE/EUR"]}, "unknown_symbol"),
        ({"type": "subscribe", "symbols": ["B T C"]}, "invalid_symbol"),
        ({"type": "subscribe", "symbols": ["BTC"], "channels": ["quotes"]}, "bad_channel"),
        ({"type": "subscribe", "symbols": ["BTC"], "channels": ["candles:3m"]}, "bad_interval"),
        ({"type": "subscribe", "symbols": [f"S{n}" for n in range(3000)]}, "too_many_symbols"),
        ({"type": "ping", "pad": "x" * 70_000}, "message_too_large"),
    ],
)
async def test_mistakes_get_an_error_and_the_connection_stays_open(
    service: Service, payload: Message | str | bytes, code: str
) -> None:
    async with connect(service) as client:
        error = await client.request(payload, "error")
        assert error["code"] == code
        assert error["message"]
        pong = await client.request({"type": "ping"}, "pong")
        assert pong["type"] == "pong"
        ack = await client.request({"type": "subscribe", "symbols": ["BTC"]}, "subscribed")
        assert ack["subscriptions"][0]["key"] == "BTC/USD"


async def test_a_huge_message_closes_with_1009(service: Service) -> None:
    limit = service.settings.max_request_bytes
    async with connect(service) as client:
        await client.send("x" * (4 * limit + 1))
        with pytest.raises(ConnectionClosed) as closed, trio.fail_after(5):
            while True:
                await client.next()
        assert closed.value.reason.code == 1009


async def test_unknown_path_is_rejected_with_404(service: Service) -> None:
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(f"ws://127.0.0.1:{service.ports['ws']}/nope"):
            pass
    assert rejected.value.status_code == 404


async def test_root_path_speaks_the_same_protocol(service: Service) -> None:
    async with connect(service, "/?client=test") as client:
        assert (await client.request({"type": "ping"}, "pong"))["type"] == "pong"


async def test_idle_session_gets_heartbeats() -> None:
    env = {"WS_HEARTBEAT_INTERVAL": "100ms"}
    async with running_service(env) as service, connect(service) as client:
        first = await client.next_of("heartbeat", within=3)
        second = await client.next_of("heartbeat", within=3)
        assert second["ts"] > first["ts"]


async def test_stream_limit_refuses_new_connections() -> None:
    async with running_service({"MAX_SUBSCRIBERS": "1"}) as service, connect(service) as first:
        await first.request({"type": "subscribe", "symbols": ["BTC"]}, "subscribed")
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(f"ws://127.0.0.1:{service.ports['ws']}/ws"):
                pass
        assert rejected.value.status_code == 503


async def test_subscribe_beyond_the_stream_limit_is_an_error() -> None:
    async with (
        running_service({"MAX_SUBSCRIBERS": "1"}) as service,
        connect(service) as first,
        connect(service) as second,
    ):
        await first.request({"type": "subscribe", "symbols": ["BTC"]}, "subscribed")
        error = await second.request({"type": "subscribe", "symbols": ["ETH"]}, "error")
        assert error["code"] == "too_many_streams"
        listed = await second.request({"type": "list"}, "subscriptions")
        assert listed["subscriptions"] == []


async def test_metrics_count_ws_subscribers_and_latency(service: Service) -> None:
    async with connect(service) as client:
        await client.request({"type": "subscribe", "symbols": ["ADA", "DOT"]}, "subscribed")
        await client.next_of("update")
        await client.next_of("update")
        streams = service.context.streams
        assert streams.subscribers[("ADA/USD", "ws")] == 1
        assert streams.subscribers[("DOT/USD", "ws")] == 1
        registry = service.context.metrics.registry
        count = registry.get_sample_value(
            "market_data_publication_latency_seconds_count", {"client_type": "ws"}
        )
        assert count is not None and count > 0
    await wait_for(lambda: streams.subscribers[("ADA/USD", "ws")] == 0)


async def test_slow_client_is_disconnected_while_fast_client_gets_every_tick() -> None:
    env = {"SLOW_CONSUMER_TIMEOUT": "500ms", "WS_SEND_BUFFER_BYTES": "4096"}
    async with running_service(env) as service:
        streams = service.context.streams
        everything = {"type": "subscribe", "symbols": service.settings.symbols}
        async with trio.open_nursery() as nursery, connect(service) as fast:
            await fast.request({"type": "subscribe", "symbols": ["BTC/USD"]}, "subscribed")
            async with small_window_client(service.ports["ws"], nursery) as slow:
                await slow.send_message(
                    json.dumps({**everything, "channels": ["ticker", "book:100", "trades"]})
                )
                await wait_for(lambda: streams.subscribers[("ETH/USD", "ws")] == 1)
                seqs: list[int] = []
                with trio.fail_after(15):
                    while streams.subscribers[("ETH/USD", "ws")] or len(seqs) < 30:
                        message = await fast.next()
                        if message["type"] in ("snapshot", "update"):
                            seqs.append(message["seq"])
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "fast client: no gap"
                lost = sum(n for (_, kind, _), n in streams.dropped.items() if kind == "ws")
                assert lost > 0, "the slow client's missed ticks are counted"
                assert streams.subscribers[("BTC/USD", "ws")] == 1
                with pytest.raises(ConnectionClosed) as closed, trio.fail_after(10):
                    while True:
                        await slow.get_message()
                # stuck in a send: reset (1006); behind but still reading: 1008
                assert closed.value.reason.code in (1006, 1008)
        nursery.cancel_scope.cancel()


async def test_drain_closes_sessions_with_going_away() -> None:
    async with running_service() as service, connect(service) as client:
        await client.request({"type": "subscribe", "symbols": ["BTC"]}, "subscribed")
        await client.next_of("update")
        service.context.lifecycle.begin_drain()
        with pytest.raises(ConnectionClosed) as closed, trio.fail_after(5):
            while True:
                await client.next()
        assert closed.value.reason.code == 1001

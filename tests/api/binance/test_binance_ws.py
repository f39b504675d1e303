"""Binance streams with a plain WebSocket client (trio-websocket), and the feeds in virtual time."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from itertools import pairwise

import httpx
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionRejected, open_websocket_url

from mdactors.adapters.history import MemoryHistory
from mdactors.app import Service
from mdactors.engine.binance_feed import DepthUpdate, KlineUpdate, SymbolFeed
from mdactors.engine.market import Market
from mdactors.engine.market_view import MarketView
from mdactors.engine.recorder import Recorder
from tests.conftest import receive, reply_to, running_service, send, url

pytestmark = pytest.mark.timeout(60)
SYMBOLS = ("btcusd", "ethusd", "adausd", "solusd", "dotusd", "usdtusd", "btceth")


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    """The service with 50 ms ticks and at most 8 streams per Binance connection."""
    async with running_service({"BINANCE_MAX_STREAMS": "8"}) as running:
        yield running


async def test_depth_diffs_are_contiguous_and_rebuild_the_exact_book(service: Service):
    """Binance's procedure: buffer the diffs, take a REST snapshot, drop the diffs it
    already holds (``u`` ≤ ``lastUpdateId``), apply the rest; the local book then
    equals every partial book at the same update id."""
    streams = [f"{s}@depth@100ms" for s in SYMBOLS[:4]] + [
        f"{s}@depth20@100ms" for s in SYMBOLS[:4]
    ]
    path = "/stream?streams=" + "/".join(streams)
    last_u: dict[str, int] = {}
    books: dict[str, dict[str, dict[str, str]]] = {}
    synced: set[str] = set()
    diffs = partials = 0
    levels: list[int] = []
    rest = httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.ports['http']}", timeout=10)
    async with rest, open_websocket_url(url(service, path)) as ws:
        while diffs < 100 or partials < 20:
            message = await receive(ws)
            stream, data = message["stream"], message["data"]
            symbol = stream.split("@")[0]
            if "@depth20" in stream:
                local = books.get(symbol)
                if local is not None and last_u.get(symbol) == data["lastUpdateId"]:
                    bids = sorted(local["b"].items(), key=lambda kv: -float(kv[0]))[:20]
                    asks = sorted(local["a"].items(), key=lambda kv: float(kv[0]))[:20]
                    assert [list(level) for level in bids] == data["bids"]
                    assert [list(level) for level in asks] == data["asks"]
                    partials += 1
                continue
            assert data["e"] == "depthUpdate" and data["U"] <= data["u"]
            if symbol not in last_u:
                # The stream (this event included) is buffered while we take a snapshot.
                snapshot = (
                    await rest.get(
                        "/api/v3/depth", params={"symbol": symbol.upper(), "limit": 5000}
                    )
                ).json()
                assert snapshot["lastUpdateId"] >= data["U"] - 1
                books[symbol] = {
                    "b": dict(map(tuple, snapshot["bids"])),
                    "a": dict(map(tuple, snapshot["asks"])),
                }
                last_u[symbol] = snapshot["lastUpdateId"]
            if data["u"] <= last_u[symbol]:
                continue  # the snapshot already holds it
            if symbol in synced:
                assert data["U"] == last_u[symbol] + 1, (symbol, data["U"], last_u[symbol])
                diffs += 1
            else:
                assert data["U"] <= last_u[symbol] + 1 <= data["u"]
                synced.add(symbol)
            local = books[symbol]
            for side in ("b", "a"):
                for price, qty in data[side]:
                    if float(qty) == 0:
                        local[side].pop(price, None)
                    else:
                        local[side][price] = qty
            last_u[symbol] = data["u"]
            levels.append(len(data["b"]) + len(data["a"]))
    # Diffs carry what changed, not the whole book (100 levels a side, 200 in all).
    assert sum(levels) / len(levels) < 100


async def test_control_messages_get_their_replies(service: Service):
    async with open_websocket_url(url(service, "/ws/0")) as ws:
        await send(ws, "SUBSCRIBE", ["btcusd@trade", "ethusd@kline_1m"], 1)
        assert await reply_to(ws, 1) == {"result": None, "id": 1}
        await send(ws, "LIST_SUBSCRIPTIONS", [], 2)
        assert (await reply_to(ws, 2))["result"] == ["btcusd@trade", "ethusd@kline_1m"]
        kinds = set()
        with trio.fail_after(5):
            while kinds != {"trade", "kline"}:
                message = await receive(ws)
                kinds.add(message.get("e"))
                if message.get("e") == "kline":
                    assert message["k"]["i"] == "1m" and message["k"]["x"] is False
        await send(ws, "SET_PROPERTY", ["combined", True], 3)
        assert await reply_to(ws, 3) == {"result": None, "id": 3}
        await send(ws, "GET_PROPERTY", ["combined"], 4)
        assert (await reply_to(ws, 4))["result"] is True
        with trio.fail_after(5):
            while "stream" not in (message := await receive(ws)):
                pass
        assert message["stream"] in ("btcusd@trade", "ethusd@kline_1m")
        await send(ws, "UNSUBSCRIBE", ["btcusd@trade", "ethusd@kline_1m"], 5)
        assert await reply_to(ws, 5) == {"result": None, "id": 5}
        await send(ws, "LIST_SUBSCRIPTIONS", [], 6)
        assert (await reply_to(ws, 6))["result"] == []


async def test_raw_path_streams_and_every_tick_stream_kind(service: Service):
    kinds = ["trade", "aggTrade", "ticker", "miniTicker", "bookTicker"]
    path = "/ws/" + "/".join(f"solusd@{kind}" for kind in kinds)
    events: set[str] = set()
    async with open_websocket_url(url(service, path)) as ws:
        with trio.fail_after(5):
            while len(events) < len(kinds):
                message = await receive(ws)
                assert "stream" not in message and message["s"] == "SOLUSD"
                events.add(message.get("e", "bookTicker"))
    assert events == {"trade", "aggTrade", "24hrTicker", "24hrMiniTicker", "bookTicker"}


async def test_all_market_tickers(service: Service):
    async with open_websocket_url(url(service, "/ws/!miniTicker@arr")) as ws:
        rows = await receive(ws)
    assert [row["s"] for row in rows] == [s.upper() for s in SYMBOLS]


async def test_bare_ws_path_speaks_binance_after_a_method_and_json_otherwise(service: Service):
    async with open_websocket_url(url(service, "/ws")) as binance:
        assert (await receive(binance))["type"] == "welcome"
        await send(binance, "SUBSCRIBE", ["btcusd@trade"], 7)
        assert await reply_to(binance, 7) == {"result": None, "id": 7}
        assert (await receive(binance))["e"] == "trade"
        async with open_websocket_url(url(service, "/ws")) as ours:
            assert (await receive(ours))["type"] == "welcome"
            await ours.send_message(json.dumps({"type": "subscribe", "symbols": ["BTC"]}))
            reply = await receive(ours)
            first = reply["messages"][0] if reply["type"] == "batch" else reply
            assert first["type"] == "subscribed"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('{"method":"SUBSCRIBE","params":["nope@trade"],"id":11}', 2),
        ('{"method":"SUBSCRIBE","params":["btcusd@kline_9m"],"id":12}', 2),
        ('{"method":"SUBSCRIBE","params":["btcusd@depth7"],"id":13}', 2),
        ('{"method":"SUBSCRIBE","params":' + json.dumps([f"{s}@trade" for s in SYMBOLS] * 2)
         + ',"id":14}', 2),
        ('{"method":"FLY","id":15}', 2),
        ('{"method":"SET_PROPERTY","params":["colour",true],"id":16}', 0),
        ('{"method":"SET_PROPERTY","params":["combined","yes"],"id":17}', 1),
        ('{"method": "SUBSCRIBE", "params": [', 3),
        (b"\x01\x02", 3),
        ("x" * 70_000, 3),
    ],
)  # fmt: skip
async def test_errors_are_binance_shaped_and_the_connection_keeps_working(
    service: Service, frame: str | bytes, code: int
):
    async with (
        open_websocket_url(url(service, "/ws/btcusd@trade")) as ws,
        open_websocket_url(url(service, "/ws/ethusd@trade")) as bystander,
    ):
        await ws.send_message(frame)
        with trio.fail_after(5):
            while "error" not in (message := await receive(ws)):
                pass
        assert message["error"]["code"] == code and isinstance(message["error"]["msg"], str)
        if isinstance(frame, str) and frame.startswith('{"method":"') and code != 3:
            assert message["id"] == json.loads(frame)["id"]
        await send(ws, "LIST_SUBSCRIPTIONS", [], 99)
        assert (await reply_to(ws, 99))["result"] == ["btcusd@trade"]
        assert (await receive(ws))["e"] == "trade"
        assert (await receive(bystander))["s"] == "ETHUSD"


async def test_a_stream_list_of_thousands_is_refused_at_the_handshake(service: Service):
    path = "/stream?streams=" + "/".join(["btcusd@trade"] * 2000)
    with pytest.raises(ConnectionRejected) as caught:
        async with open_websocket_url(url(service, path)):
            pass
    assert caught.value.status_code == 400
    async with open_websocket_url(url(service, "/ws/btcusd@trade/nope@trade")) as ws:
        first = await receive(ws)
        assert first["error"]["code"] == 2 and first["id"] is None
        assert (await receive(ws))["e"] == "trade"


# --------------------------------------------------------------------------- feeds, virtual time

BASE_NS = 1_700_000_000 * 1_000_000_000 - 10 * 1_000_000_000  # 10 s before a minute boundary


def trio_wall_clock() -> int:
    """A wall clock that follows trio's (autojump) clock."""
    return BASE_NS + int(trio.current_time() * 1e9)


async def _feed(nursery: trio.Nursery) -> SymbolFeed:
    market = Market(["BTC/USD"], 0.05, seed=3, wall_clock=trio_wall_clock)
    actor = market.actor("BTC/USD")
    history = MemoryHistory(1024)
    feed = SymbolFeed(
        actor,
        MarketView(market, Recorder(market, history), history),
        book_depth=20,
        wall_clock=trio_wall_clock,
    )
    await nursery.start(market.run)
    nursery.start_soon(feed.run)
    return feed


async def test_kline_stream_closes_its_candle_with_x_true(autojump_clock: trio.testing.MockClock):
    async with trio.open_nursery() as nursery:
        feed = await _feed(nursery)
        feed.want("kline", "1m")
        reader = feed.topic.reader(from_latest=False)
        closes: list[KlineUpdate] = []
        updates: list[KlineUpdate] = []
        while trio.current_time() < 75:
            items, _ = await reader.next_batch(1024)
            for item in items:
                if isinstance(item, KlineUpdate):
                    (closes if item.kline.closed else updates).append(item)
        nursery.cancel_scope.cancel()
    boundary_ms = (BASE_NS // 1_000_000 // 60_000 + 1) * 60_000
    assert [c.kline.end_ms for c in closes] == [boundary_ms]
    assert closes[0].kline.start_ms == boundary_ms - 60_000
    after = [u for u in updates if u.event_ms >= boundary_ms]
    assert after and all(u.kline.start_ms == boundary_ms for u in after)


async def test_a_reader_that_falls_behind_sees_a_depth_gap(autojump_clock: trio.testing.MockClock):
    async with trio.open_nursery() as nursery:
        feed = await _feed(nursery)
        feed.want("depth", 100)
        reader = feed.topic.reader(from_latest=False)
        await trio.sleep(2)
        first, _ = reader.take(1024)
        seen = [item for item in first if isinstance(item, DepthUpdate)]
        await trio.sleep(120)  # far more than the Topic holds
        later, gap = reader.take(1024)
        nursery.cancel_scope.cancel()
    assert gap > 0
    resumed = [item for item in later if isinstance(item, DepthUpdate)]
    assert resumed[0].first_id > seen[-1].last_id + 1
    assert all(b.first_id == a.last_id + 1 for a, b in pairwise(resumed))

"""Binance USD-M futures streams on /fws and /fstream with a plain WebSocket client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from itertools import pairwise
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from mdactors.api.binance.protocol import FUTURES, FUTURES_KEY, WsError, parse_path, parse_stream
from mdactors.api.binance.symbols import BinanceSymbols
from mdactors.app import Service
from mdactors.domain.positioning import ForcedOrder
from mdactors.engine.derived_actor import PerpetualActor
from tests.conftest import receive, reply_to, running_service, send, url

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    """The service with 50 ms ticks (BTC/USD-PERP is the futures market BTCUSD)."""
    async with running_service() as running:
        yield running


async def test_depth_diffs_chain_by_pu_and_line_up_with_the_snapshot(service: Service):
    """Binance's futures procedure: buffer, snapshot, drop events with ``u`` below
    ``lastUpdateId``, apply from the one with ``U ≤ lastUpdateId ≤ u``, then each
    event's ``pu`` is the previous ``u``; the local book equals the partial books."""
    async with open_websocket_url(url(service, "/fws/btcusd@depth@100ms")) as ws:
        first = await receive(ws)
        base = f"http://127.0.0.1:{service.ports['http']}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            snapshot = (await client.get("/fapi/v1/depth?symbol=BTCUSD&limit=1000")).json()
        events = [first] + [await receive(ws) for _ in range(20)]
    last_id = snapshot["lastUpdateId"]
    assert all(e["e"] == "depthUpdate" and e["s"] == "BTCUSD" and "T" in e for e in events)
    for before, after in pairwise(events):
        assert after["pu"] == before["u"] and after["U"] == after["pu"] + 1
    live = [e for e in events if e["u"] >= last_id]
    assert live[0]["U"] <= last_id <= live[0]["u"] or live[0]["pu"] == last_id
    bids = {float(p): float(q) for p, q in snapshot["bids"]}
    asks = {float(p): float(q) for p, q in snapshot["asks"]}
    for event in live:
        for side, changes in ((bids, event["b"]), (asks, event["a"])):
            for price, qty in changes:
                if float(qty) == 0:
                    side.pop(float(price), None)
                else:
                    side[float(price)] = float(qty)
    actor = service.context.market.actor("BTC/USD-PERP")
    ticks = {t.seq: t for t in await service.context.history.ticks(actor.spec.key, 0, 2**62, 5000)}
    truth = service.context.view.book(
        ticks[live[-1]["u"]], service.context.settings.binance_book_depth
    )
    assert sorted(bids.items(), reverse=True) == truth.bids
    assert sorted(asks.items()) == truth.asks


async def test_mark_price_streams_every_second_and_every_three(service: Service):
    path = "/fstream?streams=btcusd@markPrice@1s/btcusd@markPrice/!markPrice@arr@1s"
    async with open_websocket_url(url(service, path)) as ws:
        seen: dict[str, list[Any]] = {}
        with trio.fail_after(10):
            while len(seen.get("btcusd@markPrice@1s", [])) < 4:
                frame = await receive(ws)
                seen.setdefault(frame["stream"], []).append(frame["data"])
    every_second = seen["btcusd@markPrice@1s"]
    update = every_second[-1]
    assert update["e"] == "markPriceUpdate" and update["s"] == "BTCUSD"
    assert float(update["p"]) > 0 and float(update["i"]) > 0 and isinstance(update["T"], int)
    times = [u["E"] // 1000 for u in every_second]
    assert all(b > a for a, b in pairwise(times))  # one a second (a late wake-up skips one)
    assert all(u["E"] // 1000 % 3 == 0 for u in seen.get("btcusd@markPrice", []))
    assert len(seen.get("btcusd@markPrice", [])) <= 2
    assert [row["s"] for row in seen["!markPrice@arr@1s"][-1]] == ["BTCUSD"]


async def test_the_latest_liquidation_of_a_second_is_pushed(service: Service):
    actor = service.context.market.actor("BTC/USD-PERP")
    assert isinstance(actor, PerpetualActor)
    async with open_websocket_url(url(service, "/fws/0")) as ws:
        await send(ws, "SUBSCRIBE", ["btcusd@forceOrder", "!forceOrder@arr"], 1)
        assert await reply_to(ws, 1) == {"result": None, "id": 1}
        await send(ws, "LIST_SUBSCRIPTIONS", [], 2)
        assert (await reply_to(ws, 2))["result"] == ["btcusd@forceOrder", "!forceOrder@arr"]
        # Two liquidations within a second, as OpenInterest records them: only the newest shows.
        forced = actor.positions.forced
        newest = forced[-1].id if forced else 0
        now_ms = actor.latest.ts_ms
        forced.append(ForcedOrder(newest + 1, now_ms, "SELL", 40_000.0, 0.5))
        forced.append(ForcedOrder(newest + 2, now_ms, "SELL", 39_990.0, 1.25))
        events = [await receive(ws), await receive(ws)]
    for event in events:
        order = event["o"]
        assert event["e"] == "forceOrder" and order["s"] == "BTCUSD" and order["S"] == "SELL"
        assert order["q"].startswith("1.25") and order["X"] == "FILLED" and order["T"] == now_ms


async def test_tick_streams_have_the_futures_shapes(service: Service):
    path = "/fstream?streams=btcusd@aggTrade/btcusd@bookTicker/btcusd@depth5@100ms/btcusd@kline_1m"
    async with open_websocket_url(url(service, path)) as ws:
        seen: dict[str, Any] = {}
        with trio.fail_after(10):
            while len(seen) < 4:
                frame = await receive(ws)
                seen[frame["stream"]] = frame["data"]
    agg = seen["btcusd@aggTrade"]
    assert agg["e"] == "aggTrade" and "M" not in agg and agg["s"] == "BTCUSD"
    book = seen["btcusd@bookTicker"]
    assert book["e"] == "bookTicker" and {"u", "E", "T", "b", "B", "a", "A"} <= set(book)
    partial = seen["btcusd@depth5@100ms"]
    assert len(partial["b"]) == 5 and partial["pu"] == partial["U"] - 1
    assert seen["btcusd@kline_1m"]["k"]["i"] == "1m"


async def test_spot_names_are_not_futures_streams(service: Service):
    async with open_websocket_url(url(service, "/fws/0")) as ws:
        await send(ws, "SUBSCRIBE", ["ethusd@aggTrade"], 7)  # ETH/USD has no perpetual here
        reply = await reply_to(ws, 7)
        assert reply["error"]["code"] == 2
        await send(ws, "SUBSCRIBE", ["btcusd@depth@1000ms"], 8)  # a spot-only speed
        assert (await reply_to(ws, 8))["error"]["code"] == 2
        await send(ws, "SUBSCRIBE", ["!ticker@arr"], 9)  # spot's all-market stream
        assert (await reply_to(ws, 9))["error"]["code"] == 2
    async with open_websocket_url(url(service, "/ws/0")) as ws:
        await send(ws, "SUBSCRIBE", ["btcusd@markPrice"], 3)  # futures-only on spot
        assert (await reply_to(ws, 3))["error"]["code"] == 2


def test_the_futures_grammar_sans_io():
    symbols = BinanceSymbols(["BTC/USD", "BTC/USD-PERP"], ["BTC/USD-PERP=BTC/USDT"], perpetual=True)
    assert [m.name for m in symbols.markets] == ["BTCUSD", "BTCUSDT"]
    assert {m.key for m in symbols.markets} == {"BTC/USD-PERP"}
    speeds = {
        name: parse_stream(f"btcusdt@{name}", symbols, FUTURES).speed_ms
        for name in (
            "depth",
            "depth@500ms",
            "depth@100ms",
            "depth10@500ms",
            "markPrice",
            "markPrice@1s",
        )
    }
    assert speeds == {
        "depth": 250,
        "depth@500ms": 500,
        "depth@100ms": 100,
        "depth10@500ms": 500,
        "markPrice": 3000,
        "markPrice@1s": 1000,
    }
    assert parse_stream("btcusd@forceOrder", symbols, FUTURES).key == FUTURES_KEY
    assert parse_stream("!markPrice@arr@1s", symbols, FUTURES).key == FUTURES_KEY
    assert parse_stream("btcusd@aggTrade", symbols, FUTURES).key == "BTC/USD-PERP"
    assert parse_path("/fws/btcusd@aggTrade/0", 8, FUTURES) == (False, ["btcusd@aggTrade", "0"])
    assert parse_path("/fstream?streams=a/b", 8, FUTURES) == (True, ["a", "b"])
    for name in ("btcusd@depth@1000ms", "!ticker@arr", "btcusd@markPrice@3s"):
        with pytest.raises(WsError):
            parse_stream(name, symbols, FUTURES)

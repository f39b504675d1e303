"""The Binance REST API under /api/v3 against the real service (httpx)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from itertools import pairwise

import httpx
import pytest

from mdactors.app import Service
from mdactors.domain.klines import KLINE_INTERVALS
from tests.conftest import running_service

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def calm() -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    """A service whose prices hold still during a test (one tick an hour), with an alias."""
    env = {"PRICE_UPDATE_INTERVAL": "1h", "BINANCE_SYMBOL_ALIASES": "BTC/USD=BTC/USDT"}
    async with running_service(env) as service:
        base = f"http://127.0.0.1:{service.ports['http']}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            yield service, client


def _is_decimal(text: object) -> bool:
    return isinstance(text, str) and text.replace(".", "", 1).isdigit() and "." in text


async def test_binance_price_is_the_same_tick_as_our_rest_price(calm):
    service, client = calm
    binance = (await client.get("/api/v3/ticker/price", params={"symbol": "BTCUSD"})).json()
    ours = (await client.get("/api/v1/prices/BTC-USD/current")).json()
    alias = (await client.get("/api/v3/ticker/price", params={"symbol": "BTCUSDT"})).json()
    assert (
        float(binance["price"]) == ours["price"] == service.context.market.latest("BTC/USD").price
    )
    assert alias == {"symbol": "BTCUSDT", "price": binance["price"]}
    depth = (await client.get("/api/v3/depth", params={"symbol": "BTCUSD", "limit": 5})).json()
    assert depth["lastUpdateId"] == ours["sequence"]


async def test_exchange_info_lists_every_market_with_filters(calm):
    _, client = calm
    response = await client.get("/api/v3/exchangeInfo")
    assert response.status_code == 200 and "x-mbx-used-weight-1m" in response.headers
    names = [row["symbol"] for row in response.json()["symbols"]]
    assert names[:2] == ["BTCUSD", "ETHUSD"] and "BTCUSDT" in names
    one = (await client.get("/api/v3/exchangeInfo", params={"symbol": "ETHUSD"})).json()
    assert [row["symbol"] for row in one["symbols"]] == ["ETHUSD"]
    some = await client.get("/api/v3/exchangeInfo", params={"symbols": '["ETHUSD","SOLUSD"]'})
    assert [row["symbol"] for row in some.json()["symbols"]] == ["ETHUSD", "SOLUSD"]
    row = one["symbols"][0]
    assert row["status"] == "TRADING" and (row["baseAsset"], row["quoteAsset"]) == ("ETH", "USD")


async def test_market_data_shapes_use_decimal_strings(calm):
    _, client = calm
    depth = (await client.get("/api/v3/depth", params={"symbol": "BTCUSD", "limit": 5000})).json()
    assert len(depth["bids"]) == 100 and all(_is_decimal(v) for v in depth["asks"][0])
    assert float(depth["bids"][0][0]) < float(depth["asks"][0][0])
    ticker = (await client.get("/api/v3/ticker/24hr", params={"symbol": "BTCUSD"})).json()
    assert all(_is_decimal(ticker[k]) for k in ("lastPrice", "bidPrice", "askPrice", "volume"))
    book = (await client.get("/api/v3/ticker/bookTicker", params={"symbol": "BTCUSD"})).json()
    assert book["bidPrice"] == depth["bids"][0][0] and book["askQty"] == depth["asks"][0][1]
    every = (await client.get("/api/v3/ticker/24hr")).json()
    assert len(every) == 8  # the 7 spot defaults (the perpetual is no spot market) + an alias
    mini = await client.get("/api/v3/ticker/24hr", params={"symbol": "BTCUSD", "type": "MINI"})
    assert "bidPrice" not in mini.json()
    average = (await client.get("/api/v3/avgPrice", params={"symbol": "BTCUSD"})).json()
    assert average["mins"] == 5 and _is_decimal(average["price"])
    assert (await client.get("/api/v3/ping")).json() == {}
    assert isinstance((await client.get("/api/v3/time")).json()["serverTime"], int)


async def test_history_answers_fully_from_the_first_request(calm):
    _, client = calm
    klines = await client.get(
        "/api/v3/klines", params={"symbol": "BTCUSD", "interval": "1m", "limit": 1000}
    )
    rows = klines.json()
    assert len(rows) == 1000 and all(len(row) == 12 for row in rows)
    assert all(b[0] - a[0] == 60_000 for a, b in pairwise(rows))
    assert rows[-2][6] == rows[-1][0] - 1 and _is_decimal(rows[-1][4])
    trades = (await client.get("/api/v3/trades", params={"symbol": "ETHUSD", "limit": 500})).json()
    assert len(trades) == 500
    assert [t["id"] for t in trades] == sorted(t["id"] for t in trades)
    agg = await client.get(
        "/api/v3/aggTrades", params={"symbol": "ETHUSD", "fromId": 10, "limit": 3}
    )
    assert [row["a"] for row in agg.json()] == [10, 11, 12]


async def test_every_binance_interval_is_served_with_time_windows(calm):
    _, client = calm
    for interval in KLINE_INTERVALS:
        rows = (
            await client.get(
                "/api/v3/klines", params={"symbol": "SOLUSD", "interval": interval, "limit": 5}
            )
        ).json()
        assert rows and all(len(row) == 12 for row in rows), interval
    hourly = (
        await client.get(
            "/api/v3/klines", params={"symbol": "SOLUSD", "interval": "1h", "limit": 24}
        )
    ).json()
    start = hourly[3][0]
    window = await client.get(
        "/api/v3/klines",
        params={"symbol": "SOLUSD", "interval": "1h", "startTime": start, "limit": 2},
    )
    assert [row[0] for row in window.json()] == [start, start + 3_600_000]
    until = await client.get(
        "/api/v3/klines",
        params={"symbol": "SOLUSD", "interval": "2h", "endTime": start, "limit": 2},
    )
    assert all(row[0] <= start for row in until.json()) and len(until.json()) == 2


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/api/v3/depth", {"symbol": "NOPE"}, 400, -1121),
        ("/api/v3/depth", {}, 400, -1102),
        ("/api/v3/depth", {"symbol": "BTCUSD", "limit": "ten"}, 400, -1100),
        ("/api/v3/depth", {"symbol": "BTCUSD", "limit": 5001}, 400, -1130),
        ("/api/v3/depth", {"symbol": "BTCUSD", "extra": 1}, 400, -1104),
        ("/api/v3/klines", {"symbol": "BTCUSD"}, 400, -1102),
        ("/api/v3/klines", {"symbol": "BTCUSD", "interval": "1s"}, 400, -1120),
        ("/api/v3/klines", {"symbol": "BTCUSD", "interval": "1m", "limit": 1001}, 400, -1130),
        ("/api/v3/ticker/price", {"symbols": "BTCUSD"}, 400, -1100),
        ("/api/v3/ticker/price", {"symbols": '["BTCUSD","NOPE"]'}, 400, -1121),
        ("/api/v3/ticker/price", {"symbol": "BTCUSD", "symbols": '["BTCUSD"]'}, 400, -1128),
        ("/api/v3/order", {}, 404, -1000),
        ("/api/v3/depth", {"symbol": "BTCUSD", "limit": "--5"}, 400, -1100),
        ("/api/v3/depth", {"symbol": "BTCUSD", "limit": "\u00b2"}, 400, -1100),
        ("/api/v3/klines", {"symbol": "BTCUSD", "interval": "1M", "endTime": "9" * 20}, 400, -1130),
        ("/api/v3/klines", {"symbol": "BTCUSD", "interval": "1M", "startTime": -1}, 400, -1130),
        ("/api/v3/ticker/price", {"symbols": "[" * 5000}, 400, -1100),
    ],
)
async def test_bad_requests_get_binance_errors(calm, path, params, status, code):
    _, client = calm
    response = await client.get(path, params=params)
    assert response.status_code == status
    assert response.json()["code"] == code and isinstance(response.json()["msg"], str)


async def test_duplicate_parameters_are_refused(calm):
    _, client = calm
    response = await client.get("/api/v3/depth?symbol=BTCUSD&symbol=ETHUSD")
    assert response.json()["code"] == -1101
    ours = await client.get("/api/v1/prices/NOPE-USD/current")
    assert ours.status_code == 404 and "error" in ours.json()

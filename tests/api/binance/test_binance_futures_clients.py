"""ccxt's ``binanceusdm`` and ccxt.pro's, unchanged, against the perpetuals on loopback.

They are configured only through ccxt's documented URL settings
(``urls['api']`` ``fapiPublic``/``fapiPublicV2``/``fapiPublicV3``/``fapiData``
and ``urls['api']['ws']['linear']``), under the same socket-level loopback
guard as the spot clients.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import ccxt
import ccxt.pro
import httpx
import pytest
import trio

from mdactors.app import Service
from mdactors.domain.funding import FundingSettlement
from mdactors.engine.derived_actor import PerpetualActor
from tests.conftest import LoopbackGuard, in_asyncio, running_service

pytestmark = pytest.mark.timeout(60)
PERP = "BTC/USD-PERP"
CCXT_PERP = "BTC/USD:USD"
_HOUR_MS = 3_600_000


@pytest.fixture
async def service(guard: LoopbackGuard) -> AsyncIterator[Service]:
    """The service (50 ms ticks) with the perpetual also served as Binance's BTCUSDT."""
    env = {"BINANCE_SYMBOL_ALIASES": "BTC/USD-PERP=BTC/USDT"}
    async with running_service(env) as running:
        yield running


def usdm_config(service: Service) -> dict[str, Any]:
    """ccxt's documented overrides for USD-M: the fapi REST URLs and the linear stream URL."""
    http = f"http://127.0.0.1:{service.ports['http']}"
    ws = f"ws://127.0.0.1:{service.ports['ws']}/fws"
    api = {
        "fapiPublic": f"{http}/fapi/v1",
        "fapiPublicV2": f"{http}/fapi/v2",
        "fapiPublicV3": f"{http}/fapi/v3",
        "fapiData": f"{http}/futures/data",
    }
    return {"urls": {"api": {**api, "ws": {"linear": ws}}}, "options": {"fetchCurrencies": False}}


def perpetual(service: Service) -> PerpetualActor:
    actor = service.context.market.actor(PERP)
    assert isinstance(actor, PerpetualActor)
    return actor


async def test_ccxt_binanceusdm_reads_the_perpetual(service: Service, guard: LoopbackGuard):
    actor = perpetual(service)
    # Settlements happen on the 00/08/16 UTC marks: three are put in the actor's
    # history (as it records them) so the endpoint's range and limit can be read.
    grid = actor.funding.next_funding_ms - 3 * 8 * _HOUR_MS
    rates = (0.0001, -0.0002, 0.0003)
    settled = [
        FundingSettlement(grid + i * 8 * _HOUR_MS, rate, 50_000.0 + i)
        for i, rate in enumerate(rates)
    ]
    actor.funding.history.extend(settled)

    def work() -> dict[str, Any]:
        exchange = ccxt.binanceusdm(usdm_config(service))
        markets = exchange.load_markets()
        return {
            "markets": markets,
            "ticker": exchange.fetch_ticker(CCXT_PERP),
            "book": exchange.fetch_order_book(CCXT_PERP, 20),
            "ohlcv": exchange.fetch_ohlcv(CCXT_PERP, "1m", limit=500),
            "hourly": exchange.fetch_ohlcv(CCXT_PERP, "1h", limit=24),
            "trades": exchange.fetch_trades(CCXT_PERP, limit=100),
            "funding": exchange.fetch_funding_rate(CCXT_PERP),
            "history": exchange.fetch_funding_rate_history(CCXT_PERP),
            "since": exchange.fetch_funding_rate_history(CCXT_PERP, since=grid + 1, limit=1),
            "interest": exchange.fetch_open_interest(CCXT_PERP),
            "mark": exchange.fetch_mark_ohlcv(CCXT_PERP, "1m", limit=30),
            "index": exchange.fetch_index_ohlcv(CCXT_PERP, "5m", limit=12),
            "alias": exchange.fetch_ticker("BTC/USDT:USDT"),
        }

    got = await trio.to_thread.run_sync(work)
    market = got["markets"][CCXT_PERP]
    assert market["id"] == "BTCUSD" and market["swap"] and market["linear"]
    assert market["settle"] == "USD" and market["precision"]["price"] == 0.01
    assert "BTC/USD" not in got["markets"]  # spot is not a futures market
    last = actor.latest.price
    assert abs(got["ticker"]["last"] / last - 1) < 0.01
    assert abs(got["alias"]["last"] / last - 1) < 0.01
    book = got["book"]
    assert len(book["bids"]) == 20 and book["bids"][0][0] < book["asks"][0][0]
    assert book["nonce"] > 0
    assert len(got["ohlcv"]) == 500 and len(got["hourly"]) == 24
    assert len(got["trades"]) == 100 and got["trades"][-1]["symbol"] == CCXT_PERP
    funding = got["funding"]
    assert funding["fundingTimestamp"] == actor.funding.next_funding_ms
    assert abs(funding["fundingRate"] - actor.funding.estimated_rate) < 1e-4
    assert abs(funding["markPrice"] / actor.funding.mark - 1) < 0.01
    assert abs(funding["indexPrice"] / actor.spot.mid - 1) < 0.01
    history = got["history"]
    assert [row["timestamp"] for row in history] == [s.time_ms for s in settled]
    assert [row["fundingRate"] for row in history] == list(rates)
    assert [row["timestamp"] for row in got["since"]] == [settled[1].time_ms]
    assert abs(got["interest"]["openInterestAmount"] / actor.positions.oi - 1) < 0.01
    mark = got["mark"]
    assert len(mark) == 30 and all(row[5] == 0 for row in mark)
    assert mark[-1][0] % 60_000 == 0 and mark[-1][0] - mark[0][0] == 29 * 60_000
    assert len(got["index"]) == 12 and abs(got["index"][-1][4] / actor.spot.mid - 1) < 0.01
    assert guard.connects and not guard.refused


async def fapi(service: Service, path: str, **params: Any) -> httpx.Response:
    base = f"http://127.0.0.1:{service.ports['http']}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        return await client.get(path, params=params)


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        ("/fapi/v1/depth", {"symbol": "NOPEUSD"}, -1121),
        ("/fapi/v1/depth", {"symbol": "BTCUSD", "limit": 7}, -1130),
        ("/fapi/v1/depth", {}, -1102),
        ("/fapi/v1/klines", {"symbol": "BTCUSD", "interval": "7m"}, -1120),
        ("/fapi/v1/klines", {"symbol": "BTCUSD", "interval": "1m", "limit": 1501}, -1130),
        ("/fapi/v1/markPriceKlines", {"symbol": "BTCUSD", "interval": "2s"}, -1120),
        ("/fapi/v1/indexPriceKlines", {"interval": "1m"}, -1102),
        ("/fapi/v1/fundingRate", {"symbol": "BTCUSD", "limit": 1001}, -1130),
        ("/fapi/v1/openInterest", {"symbol": "ETHUSD"}, -1121),  # spot is not a perpetual
        ("/fapi/v1/premiumIndex", {"symbol": "BTCUSD", "foo": "1"}, -1104),
        ("/fapi/v1/ticker/24hr", {"symbol": "BTCUSD", "limit": "x"}, -1104),
    ],
)
async def test_bad_requests_get_binance_errors(
    service: Service, path: str, params: dict[str, Any], code: int
):
    response = await fapi(service, path, **params)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == code and body["msg"]


async def test_unknown_fapi_path_is_a_binance_404(service: Service):
    response = await fapi(service, "/fapi/v1/allForceOrders")
    assert response.status_code == 404 and response.json()["code"] == -1000


async def test_depth_and_premium_index_shapes(service: Service):
    depth = (await fapi(service, "/fapi/v1/depth", symbol="BTCUSD", limit=5)).json()
    assert set(depth) == {"lastUpdateId", "E", "T", "bids", "asks"} and len(depth["bids"]) == 5
    rows = (await fapi(service, "/fapi/v1/premiumIndex")).json()
    assert [row["symbol"] for row in rows] == ["BTCUSD", "BTCUSDT"]
    row = rows[0]
    assert row["interestRate"] == "0.00010000" and isinstance(row["nextFundingTime"], int)
    assert float(row["markPrice"]) > 0 and float(row["indexPrice"]) > 0
    info = (await fapi(service, "/fapi/v1/exchangeInfo")).json()
    contract = info["symbols"][0]
    assert contract["contractType"] == "PERPETUAL" and contract["marginAsset"] == "USD"
    assert contract["pricePrecision"] == 2


async def test_ccxt_pro_binanceusdm_streams_and_keeps_its_book_in_sync(
    service: Service, guard: LoopbackGuard
):
    books: list[tuple[int, list[list[float]], list[list[float]]]] = []

    async def main() -> dict[str, Any]:
        exchange = ccxt.pro.binanceusdm(usdm_config(service))
        try:
            ticker = await exchange.watch_ticker(CCXT_PERP)
            for _ in range(25):
                book = await exchange.watch_order_book(CCXT_PERP)
                # copy the levels: ccxt updates [price, size] lists in place later
                bids = [list(level) for level in book["bids"][:20]]
                asks = [list(level) for level in book["asks"][:20]]
                books.append((book["nonce"], bids, asks))
            trades = await exchange.watch_trades(CCXT_PERP)
            ohlcv = await exchange.watch_ohlcv(CCXT_PERP, "1m")
            mark = await exchange.watch_mark_price(CCXT_PERP)
            return {"ticker": ticker, "trades": trades, "ohlcv": ohlcv, "mark": mark}
        finally:
            await exchange.close()

    got = await in_asyncio(main)
    actor = perpetual(service)
    assert abs(got["ticker"]["last"] / actor.latest.price - 1) < 0.01
    assert got["trades"][-1]["symbol"] == CCXT_PERP and got["trades"][-1]["price"] > 1000
    assert got["ohlcv"][-1][0] % 60_000 == 0
    assert abs(got["mark"]["markPrice"] / actor.funding.mark - 1) < 0.01
    nonces = [nonce for nonce, _, _ in books]
    assert len(set(nonces)) >= 20 and nonces == sorted(nonces)
    ticks = {tick.seq: tick for tick in await service.context.history.ticks(PERP, 0, 2**62, 10_000)}
    for nonce, bids, asks in books:
        tick = ticks[nonce]
        truth = service.context.view.book(tick, 20)
        assert [tuple(level) for level in bids] == truth.bids
        assert [tuple(level) for level in asks] == truth.asks
    assert not guard.refused

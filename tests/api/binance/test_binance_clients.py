"""Real Binance clients, unchanged, against the service on loopback.

ccxt (REST) and python-binance (REST, sync) run in worker threads; ccxt.pro
and python-binance's socket manager run their own asyncio loop in a worker
thread. They are configured only through their documented URL settings:
ccxt's ``urls['api']`` overrides and options, python-binance's ``API_URL``
and ``STREAM_URL``. A socket-level guard refuses, and records, any connection
that would leave loopback.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import ccxt
import ccxt.pro
import httpx
import pytest
import trio
from binance import AsyncClient, BinanceSocketManager
from binance.client import Client

from mdactors.app import Service
from mdactors.domain.book import book_at
from tests.conftest import LoopbackGuard, in_asyncio, running_service

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def service(guard: LoopbackGuard) -> AsyncIterator[Service]:
    """The service with 50 ms ticks."""
    async with running_service() as running:
        yield running


def ccxt_config(service: Service) -> dict[str, Any]:
    """ccxt's documented overrides: the REST and WebSocket URLs, spot markets only."""
    http = f"http://127.0.0.1:{service.ports['http']}"
    ws = f"ws://127.0.0.1:{service.ports['ws']}/ws"
    api = {"public": f"{http}/api/v3", "private": f"{http}/api/v3", "v1": f"{http}/api/v1"}
    return {
        "urls": {"api": {**api, "ws": {"spot": ws}}},
        "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False},
    }


async def test_ccxt_rest_reads_the_market(service: Service, guard: LoopbackGuard):
    def work() -> dict[str, Any]:
        exchange = ccxt.binance(ccxt_config(service))
        markets = exchange.load_markets()
        return {
            "markets": markets,
            "ticker": exchange.fetch_ticker("BTC/USD"),
            "tickers": exchange.fetch_tickers(["BTC/USD", "ETH/USD"]),
            "book": exchange.fetch_order_book("ETH/USD", 20),
            "ohlcv": exchange.fetch_ohlcv("BTC/USD", "1m", limit=500),
            "hourly": exchange.fetch_ohlcv("BTC/USD", "1h", limit=24),
            "trades": exchange.fetch_trades("SOL/USD", limit=100),
        }

    got = await trio.to_thread.run_sync(work)
    market = got["markets"]["BTC/USD"]
    assert market["id"] == "BTCUSD" and market["spot"] and market["precision"]["price"] == 0.01
    assert got["ticker"]["last"] > 1000 and set(got["tickers"]) == {"BTC/USD", "ETH/USD"}
    book = got["book"]
    assert len(book["bids"]) == 20 and book["bids"][0][0] < book["asks"][0][0]
    assert len(got["ohlcv"]) == 500 and len(got["hourly"]) == 24
    assert len(got["trades"]) == 100 and got["trades"][0]["symbol"] == "SOL/USD"
    assert guard.connects and not guard.refused


async def test_python_binance_rest(service: Service, guard: LoopbackGuard):
    def work() -> tuple[Any, ...]:
        client = Client(ping=False)
        client.API_URL = f"http://127.0.0.1:{service.ports['http']}/api"
        client.ping()
        return (
            client.get_exchange_info(),
            client.get_symbol_ticker(symbol="ETHUSD"),
            client.get_order_book(symbol="ETHUSD", limit=10),
            client.get_klines(symbol="ETHUSD", interval=Client.KLINE_INTERVAL_30MINUTE, limit=48),
        )

    info, ticker, book, klines = await trio.to_thread.run_sync(work)
    assert {row["symbol"] for row in info["symbols"]} >= {"BTCUSD", "ETHUSD", "USDTUSD"}
    assert ticker["symbol"] == "ETHUSD" and float(ticker["price"]) > 100
    assert len(book["bids"]) == 10 and book["lastUpdateId"] > 0
    assert len(klines) == 48 and klines[1][0] - klines[0][0] == 30 * 60_000
    assert not guard.refused


async def test_ccxt_pro_streams_and_keeps_its_book_in_sync(service: Service, guard: LoopbackGuard):
    books: list[tuple[int, list[list[float]], list[list[float]]]] = []

    async def main() -> dict[str, Any]:
        exchange = ccxt.pro.binance(ccxt_config(service))
        try:
            ticker = await exchange.watch_ticker("BTC/USD")
            for _ in range(25):
                book = await exchange.watch_order_book("BTC/USD")
                # copy the levels: ccxt updates [price, size] lists in place later
                bids = [list(level) for level in book["bids"][:20]]
                asks = [list(level) for level in book["asks"][:20]]
                books.append((book["nonce"], bids, asks))
            trades = await exchange.watch_trades("BTC/USD")
            ohlcv = await exchange.watch_ohlcv("BTC/USD", "1m")
            return {"ticker": ticker, "trades": trades, "ohlcv": ohlcv}
        finally:
            await exchange.close()

    got = await in_asyncio(main)
    assert got["ticker"]["last"] > 1000 and got["trades"][-1]["price"] > 1000
    assert got["ohlcv"][-1][0] % 60_000 == 0
    nonces = [nonce for nonce, _, _ in books]
    assert len(set(nonces)) >= 20 and nonces == sorted(nonces)
    actor = service.context.market.actor("BTC/USD")
    ticks = {
        tick.seq: tick for tick in await service.context.history.ticks("BTC/USD", 0, 2**62, 10_000)
    }
    for nonce, bids, asks in books:
        assert bids[0][0] < asks[0][0]
        tick = ticks[nonce]
        truth = book_at(actor.spec, tick, 20, [ticks[seq] for seq in sorted(ticks) if seq < nonce])
        assert [tuple(level) for level in bids] == truth.bids
        assert [tuple(level) for level in asks] == truth.asks
    assert not guard.refused


async def test_python_binance_raw_and_combined_sockets(service: Service, guard: LoopbackGuard):
    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        client = AsyncClient()
        client.API_URL = f"http://127.0.0.1:{service.ports['http']}/api"
        manager = BinanceSocketManager(client)
        manager.STREAM_URL = f"ws://127.0.0.1:{service.ports['ws']}/"
        try:
            async with manager.trade_socket("BTCUSD") as stream:
                trade = await stream.recv()
            async with manager.multiplex_socket(["ethusd@kline_1m", "ethusd@trade"]) as stream:
                wrapped = await stream.recv()
            return trade, wrapped
        finally:
            await client.close_connection()

    trade, wrapped = await in_asyncio(main)
    assert trade["e"] == "trade" and trade["s"] == "BTCUSD"
    assert wrapped["stream"] in ("ethusd@kline_1m", "ethusd@trade")
    assert not guard.refused


async def test_a_chaos_price_shock_shows_through_ccxt(service: Service, guard: LoopbackGuard):
    exchange = ccxt.binance(ccxt_config(service))
    before = (await trio.to_thread.run_sync(exchange.fetch_ticker, "SOL/USD"))["last"]
    base = f"http://127.0.0.1:{service.ports['http']}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        started = await client.post(
            "/chaos/price-shock",
            json={"symbol": "SOL/USD", "shock_percentage": -10, "duration_seconds": 60},
        )
        assert started.status_code < 300, started.text
    with trio.fail_after(10):
        while True:
            last = (await trio.to_thread.run_sync(exchange.fetch_ticker, "SOL/USD"))["last"]
            if last < before * 0.95:
                break
            await trio.sleep(0.05)
    assert not guard.refused


async def test_the_guard_refuses_a_connection_that_leaves_loopback(guard: LoopbackGuard):
    with pytest.raises(ConnectionRefusedError), socket.socket() as sock:
        sock.connect(("192.0.2.1", 9))
    assert guard.refused == [("192.0.2.1", 9)]

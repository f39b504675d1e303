"""PostgreSQL writes of a running service: every table equals what the API served, outages
lose nothing within the backlog and count what overflows it, a restart writes no duplicates."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx
import psycopg
import trio
from psycopg import sql

from mdactors.adapters.breaker import CircuitBreaker
from mdactors.adapters.postgres_store import PostgresStore, postgres_pool
from mdactors.domain.candles import INTERVALS
from mdactors.domain.tick import Tick
from tests.conftest import POSTGRES_ADMIN_URL, ROOT, TcpProxy, running_service, wait_for


def _env(url: str, schema: str, **extra: str) -> dict[str, str]:
    return {
        "POSTGRES_URL": url,
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_TIMEOUT": "1s",
        "POSTGRES_BREAKER_TIMEOUT": "300ms",
        "PRICE_FEED_SAMPLE_INTERVAL": "0",
        "SNAPSHOT_INTERVAL": "200ms",
        "DEFAULT_SYMBOLS": "BTC/USD,ETH/USD",
        **extra,
    }


async def _query(url: str, query: sql.Composable, params: tuple[Any, ...] = ()) -> list[tuple]:
    def run() -> list[tuple]:
        with psycopg.connect(url) as conn:
            return conn.execute(query, params).fetchall()

    return await trio.to_thread.run_sync(run)


def _server(url: str) -> SplitResult:
    return urlsplit(url)


def _through(url: str, proxy: TcpProxy) -> str:
    """``url`` with its server replaced by ``proxy`` on loopback."""
    parts = _server(url)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))


def _table(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


async def _wait_for_rows(url: str, query: sql.Composable, params: tuple, count: int) -> list:
    with trio.fail_after(20):
        while True:
            rows = await _query(url, query, params)
            if len(rows) >= count:
                return rows
            await trio.sleep(0.05)


async def test_rows_of_every_table_equal_what_the_api_served(
    postgres_database: str, postgres_schema: str
) -> None:
    url, schema = postgres_database, postgres_schema
    async with running_service(_env(url, schema)) as service:
        store = service.context.postgres
        assert store is not None
        await wait_for(lambda: store.persisted["market_snapshots"] >= 4, 20)
        base = f"http://127.0.0.1:{service.ports['http']}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            ticks = (
                await http.get("/api/v1/prices/BTC-USD/history?interval=tick&limit=1000")
            ).json()["data"]
            candles = {
                interval: (
                    await http.get(f"/api/v1/prices/BTC-USD/history?interval={interval}&limit=50")
                ).json()["data"]
                for interval in INTERVALS
            }
        by_seq = {tick["sequence"]: tick for tick in ticks}
        feeds = await _wait_for_rows(
            url,
            sql.SQL(
                "SELECT (metadata->>'seq')::int, price, bid, ask, source FROM {} "
                "WHERE symbol = 'BTC/USD' AND (metadata->>'seq')::int <= %s ORDER BY 1"
            ).format(_table(schema, "price_feeds")),
            (max(by_seq),),
            len(by_seq),
        )
        assert [row[0] for row in feeds] == sorted(by_seq), "every tick, once, none other"
        for seq, price, bid, ask, source in feeds:
            served = by_seq[seq]
            assert (float(price), float(bid), float(ask)) == (
                served["price"],
                served["bid"],
                served["ask"],
            )
            assert source == "simulator"

        # The backfill older than a day is served from memory, never stored.
        day_ago_ms = time.time_ns() // 1_000_000 - 86_400_000
        for interval, served_candles in candles.items():
            length_ms = INTERVALS[interval] * 1000
            closed = [
                c
                for c in served_candles
                if c["closed"] and c["timestamp_ms"] + length_ms > day_ago_ms
            ]
            assert closed, interval
            rows = await _query(
                url,
                sql.SQL(
                    "SELECT (extract(epoch FROM start_time) * 1000)::bigint, open, high, low, "
                    "close, volume, num_trades, end_time - start_time FROM {} "
                    "WHERE symbol = 'BTC/USD' AND interval = %s AND start_time >= "
                    "to_timestamp(%s / 1000.0) ORDER BY start_time"
                ).format(_table(schema, "candles")),
                (interval, closed[0]["timestamp_ms"]),
            )
            stored = {row[0]: row for row in rows}
            for candle in closed:
                row = stored[candle["timestamp_ms"]]
                assert [float(v) for v in row[1:6]] == [
                    candle["open"],
                    candle["high"],
                    candle["low"],
                    candle["close"],
                    _on_lot_grid(candle["volume"]),
                ]
                assert row[6] == candle["trades"]
                assert row[7].total_seconds() == INTERVALS[interval]
            forming = [c for c in served_candles if not c["closed"]]
            assert all(c["timestamp_ms"] not in stored for c in forming), "forming never written"

        snapshots = await _query(
            url,
            sql.SQL(
                "SELECT (metadata->>'seq')::int, last_price, bid, ask, spread FROM {} "
                "WHERE symbol = 'BTC/USD' AND (metadata->>'seq')::int <= %s"
            ).format(_table(schema, "market_snapshots")),
            (max(by_seq),),
        )
        assert snapshots
        for seq, last, bid, ask, spread in snapshots:
            served = by_seq[seq]
            assert (float(last), float(bid), float(ask)) == (
                served["price"],
                served["bid"],
                served["ask"],
            )
            assert spread == ask - bid

        symbols = await _query(
            url,
            sql.SQL(
                "SELECT symbol, is_active, base_currency, quote_currency FROM {} ORDER BY 1"
            ).format(_table(schema, "symbols")),
        )
        assert symbols == [("BTC/USD", True, "BTC", "USD"), ("ETH/USD", True, "ETH", "USD")]


def _on_lot_grid(volume: float) -> float:
    """A candle's volume as stored: on its symbol's lot grid (BTC: 6 decimals)."""
    return round(volume, 6)


async def test_outage_within_the_backlog_loses_nothing(
    postgres_database: str, postgres_schema: str
) -> None:
    proxy = TcpProxy(_server(postgres_database).port or 5432)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        url = _through(postgres_database, proxy)
        env = _env(url, postgres_schema, DEFAULT_SYMBOLS="BTC/USD", PRICE_UPDATE_INTERVAL="20ms")
        async with running_service(env) as service:
            store = service.context.postgres
            assert store is not None
            await wait_for(lambda: store.up and store.persisted["price_feeds"] > 5, 20)
            proxy.down()
            await wait_for(lambda: not store.up, 10)
            base = f"http://127.0.0.1:{service.ports['http']}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                check = (await http.get("/api/v1/ready")).json()["checks"]["postgres"]
                assert check["status"] == "degraded"
                assert check["reason"] in {"connection", "timeout"}
                served = await http.get("/api/v1/prices/BTC-USD/current")
                assert served.status_code == 200, "the service keeps serving"
            await wait_for(lambda: store.backlog["price_feeds"] > 20, 10)
            proxy.up()
            await wait_for(lambda: store.up and store.backlog["price_feeds"] < 5, 20)
            last_seq = service.context.market.latest("BTC/USD").seq
        nursery.cancel_scope.cancel()
    seqs = await _wait_for_rows(
        postgres_database,
        sql.SQL(
            "SELECT (metadata->>'seq')::int FROM {} WHERE (metadata->>'seq')::int <= %s ORDER BY 1"
        ).format(_table(postgres_schema, "price_feeds")),
        (last_seq,),
        last_seq,
    )
    assert [seq for (seq,) in seqs] == list(range(1, last_seq + 1))
    assert store.dropped["price_feeds"] == 0


def _tick(seq: int) -> Tick:
    price = 100.0 + seq / 100
    return Tick("BTC/USD", seq, price, price - 0.01, price + 0.01, 0.5, seq * 1_000_000_000,
                0.01, 0.01, price, 100.0, seq * 0.5)  # fmt: skip


async def test_overflow_beyond_the_backlog_is_dropped_oldest_first_and_counted(
    postgres_database: str, postgres_schema: str
) -> None:
    proxy = TcpProxy(_server(postgres_database).port or 5432)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        proxy.down()
        url = _through(postgres_database, proxy)
        store = PostgresStore(
            postgres_pool(url, 2, 1.0),
            CircuitBreaker("postgres", 5, 0.3),
            schema=postgres_schema,
            backlog=100,
        )
        nursery.start_soon(store.run)
        store.record_price_feeds([(_tick(seq), 10.0) for seq in range(1, 121)])
        await wait_for(lambda: store.errors["connection"] + store.errors["timeout"] > 0, 10)
        assert store.dropped == {"price_feeds": 20, "candles": 0, "market_snapshots": 0,
                                 "symbols": 0}  # fmt: skip
        metrics = {m.name: m for m in store.collector().collect()}
        samples = metrics["market_data_postgres_dropped"].samples
        dropped = {s.labels["table"]: s.value for s in samples if s.name.endswith("_total")}
        assert dropped["price_feeds"] == 20
        proxy.up()
        await wait_for(lambda: store.up and store.waiting == 0, 20)
        nursery.cancel_scope.cancel()
    rows = await _query(
        postgres_database,
        sql.SQL("SELECT (metadata->>'seq')::int FROM {} ORDER BY 1").format(
            _table(postgres_schema, "price_feeds")
        ),
    )
    assert [seq for (seq,) in rows] == list(range(21, 121))
    assert store.persisted["price_feeds"] == 100


async def test_a_restart_continues_without_duplicates_or_rewriting_stored_candles(
    postgres_database: str, postgres_schema: str
) -> None:
    url, schema = postgres_database, postgres_schema
    candles = sql.SQL(
        "SELECT symbol, interval, start_time, open, high, low, close, volume FROM {} "
        "ORDER BY 1, 2, 3"
    ).format(_table(schema, "candles"))
    catalogue = sql.SQL("SELECT symbol, created_at, updated_at FROM {} ORDER BY 1").format(
        _table(schema, "symbols")
    )
    async with running_service(_env(url, schema)) as first:
        store = first.context.postgres
        assert store is not None
        await wait_for(
            lambda: store.persisted["symbols"] == 2 and store.backlog["candles"] == 0, 20
        )
    before = await _query(url, candles)
    symbols_before = await _query(url, catalogue)
    # Another seed: the backfill of the second run makes other candles for the same minutes.
    async with running_service(_env(url, schema, SIM_SEED="7")) as second:
        store = second.context.postgres
        assert store is not None
        await wait_for(
            lambda: store.persisted["symbols"] == 2 and store.backlog["candles"] == 0, 20
        )
        await wait_for(lambda: store.persisted["price_feeds"] > 10, 10)
        assert set(store.errors.values()) == {0}
    after = await _query(url, candles)
    assert set(before) <= set(after), "stored candles are never rewritten by a warm start"
    keys = [row[:3] for row in after]
    assert len(keys) == len(set(keys))
    symbols_after = await _query(url, catalogue)
    assert [row[:2] for row in symbols_after] == [row[:2] for row in symbols_before]
    assert all(a[2] > b[2] for a, b in zip(symbols_after, symbols_before, strict=True))


def test_bench_runs(postgres_database: str) -> None:
    root = ROOT
    result = subprocess.run(
        [sys.executable, "-m", "bench.postgres_writes", "--seconds", "0.3", "--url",
         POSTGRES_ADMIN_URL],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=root,
    )  # fmt: skip
    assert "rows/s persisted" in result.stdout


async def test_a_slow_postgres_times_out_degrades_and_catches_up(
    postgres_database: str, postgres_schema: str
) -> None:
    env = _env(postgres_database, postgres_schema, DEFAULT_SYMBOLS="BTC/USD")
    async with running_service(env) as service:
        store = service.context.postgres
        assert store is not None
        await wait_for(lambda: store.up and store.persisted["price_feeds"] > 5, 20)
        blocker = await trio.to_thread.run_sync(psycopg.connect, postgres_database)
        try:
            # Another session holds the table: every write waits until POSTGRES_TIMEOUT (1 s).
            await trio.to_thread.run_sync(
                blocker.execute,
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                    _table(postgres_schema, "price_feeds")
                ),
            )
            await wait_for(lambda: store.reason == "timeout" and not store.up, 10)
            base = f"http://127.0.0.1:{service.ports['http']}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                with trio.fail_after(1):  # the loop is never blocked by the waiting writer
                    served = await http.get("/api/v1/prices/BTC-USD/current")
            assert served.status_code == 200
            waiting = store.backlog["price_feeds"]
            assert waiting > 0
        finally:
            await trio.to_thread.run_sync(blocker.close)  # rolls back: the lock is gone
        await wait_for(lambda: store.up and store.backlog["price_feeds"] < waiting, 20)
        assert store.dropped["price_feeds"] == 0

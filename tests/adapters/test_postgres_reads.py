"""Reads from PostgreSQL: history past the memory retention, the catalogue, snapshots."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import psycopg
from psycopg import sql

from mdactors.adapters.postgres_rows import CANDLE_COLUMNS, candle_row
from mdactors.adapters.postgres_schema import ensure_schema
from mdactors.app import Service
from mdactors.domain.candles import Candle
from mdactors.domain.symbols import spec_for
from mdactors.domain.tick import Tick
from tests.conftest import running_service, wait_for

_DAY_MS = 86_400_000


@asynccontextmanager
async def _served(
    url: str | None, schema: str = "market_data"
) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    env = {"DEFAULT_SYMBOLS": "BTC/USD,ETH/USD", "SNAPSHOT_INTERVAL": "200ms"}
    if url is not None:
        env |= {"POSTGRES_URL": url, "POSTGRES_SCHEMA": schema}
    async with running_service(env) as service:
        store = service.context.postgres
        if store is not None:
            await wait_for(lambda: store.up and store.persisted["symbols"] == 2, 20)
        base = f"http://127.0.0.1:{service.ports['http']}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            yield service, http


def _old_minute() -> int:
    now_ms = time.time_ns() // 1_000_000
    return now_ms - now_ms % 60_000 - 30 * _DAY_MS


async def test_history_past_the_memory_retention_is_answered_from_postgres(
    postgres_database: str, postgres_schema: str
) -> None:
    start = _old_minute()
    candles = [
        Candle("BTC/USD", "1m", start + i * 60_000, 40_000.5 + i, 40_010.25 + i, 39_990.0 + i,
               40_001.75 + i, 1.5 + i, 7 + i, True)
        for i in range(3)
    ]  # fmt: skip
    ticks = [
        Tick("BTC/USD", 10 + i, 40_000.25 + i, 40_000.0 + i, 40_000.5 + i, 0.25,
             (start + i * 1_000) * 1_000_000 + 123, 1.0, 0.0025, 40_100.0, 39_000.0, 10.5)
        for i in range(3)
    ]  # fmt: skip
    async with _served(postgres_database, postgres_schema) as (service, http):
        store = service.context.postgres
        assert store is not None
        # A month-old past, as an earlier run wrote it (rows made by the writer's own code).
        with psycopg.connect(postgres_database, autocommit=True) as conn, conn.cursor() as cur:
            names = sql.SQL(", ").join(map(sql.Identifier, CANDLE_COLUMNS))
            marks = sql.SQL(", ").join(sql.Placeholder() * len(CANDLE_COLUMNS))
            cur.executemany(
                sql.SQL("INSERT INTO {}.candles ({}) VALUES ({})").format(
                    sql.Identifier(postgres_schema), names, marks
                ),
                [candle_row(candle, spec_for("BTC/USD")) for candle in candles],
            )
        store.record_price_feeds([(tick, 24_000.0) for tick in ticks])
        await wait_for(lambda: store.backlog["price_feeds"] == 0)
        window = f"start={start}&end={start + 3 * 60_000 - 1}"
        served = (await http.get(f"/api/v1/prices/BTC-USD/history?interval=1m&{window}")).json()
        tick_answer = (
            await http.get(f"/api/v1/prices/BTC-USD/history?interval=tick&{window}")
        ).json()
        klines = (
            await http.get(f"/api/v3/klines?symbol=BTCUSD&interval=1m&startTime={start}&limit=3")
        ).json()
    assert [(c["timestamp_ms"], c["open"], c["high"], c["low"], c["close"], c["volume"],
             c["trades"], c["closed"]) for c in served["data"]] == [
        (c.start_ms, c.open, c.high, c.low, c.close, c.volume, c.trades, True) for c in candles
    ]  # fmt: skip
    assert [(t["sequence"], t["price"], t["bid"], t["ask"], t["timestamp_ns"])
            for t in tick_answer["data"]] == [
        (t.seq, t.price, t.bid, t.ask, t.ts_ns) for t in ticks
    ]  # fmt: skip
    assert [(row[0], float(row[1]), float(row[4])) for row in klines] == [
        (c.start_ms, c.open, c.close) for c in candles
    ]


async def test_symbols_lists_the_catalogue_with_an_active_filter(
    postgres_database: str, postgres_schema: str
) -> None:
    async with _served(postgres_database, postgres_schema) as (_, http):
        with psycopg.connect(postgres_database, autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.symbols (symbol, base_currency, quote_currency, is_active) "
                    "VALUES ('XRP/USD', 'XRP', 'USD', false)"
                ).format(sql.Identifier(postgres_schema))
            )
        every = (await http.get("/api/v1/symbols")).json()
        active = (await http.get("/api/v1/symbols?active=true")).json()
        inactive = (await http.get("/api/v1/symbols?active=false")).json()
        bad = await http.get("/api/v1/symbols?active=sometimes")
    assert every["source"] == "postgres"
    assert [s["symbol"] for s in every["symbols"]] == ["BTC/USD", "ETH/USD", "XRP/USD"]
    assert [s["symbol"] for s in active["symbols"]] == ["BTC/USD", "ETH/USD"]
    assert [s["symbol"] for s in inactive["symbols"]] == ["XRP/USD"]
    btc = active["symbols"][0]
    assert (btc["base_currency"], btc["quote_currency"], btc["min_price_movement"]) == (
        "BTC",
        "USD",
        0.01,
    )
    assert btc["created_at"].endswith("Z")
    assert bad.status_code == 400
    assert bad.json()["parameter"] == "active"


async def test_symbols_without_postgres_come_from_the_market() -> None:
    async with _served(None) as (_, http):
        answer = (await http.get("/api/v1/symbols?active=true")).json()
    assert answer["source"] == "market"
    assert [s["symbol"] for s in answer["symbols"]] == ["BTC/USD", "ETH/USD"]
    assert answer["symbols"][0]["created_at"] is None


async def test_snapshots_are_served_in_range_and_bad_input_is_a_4xx(
    postgres_database: str, postgres_schema: str
) -> None:
    async with _served(postgres_database, postgres_schema) as (service, http):
        store = service.context.postgres
        assert store is not None
        await wait_for(lambda: store.persisted["market_snapshots"] >= 4, 20)
        answer = (await http.get("/api/v1/snapshots/BTC-USD?limit=2")).json()
        empty = (await http.get("/api/v1/snapshots/btc-usd?end=2020-01-01T00:00:00Z")).json()
        errors = {
            query: await http.get(f"/api/v1/snapshots/{query}")
            for query in (
                "BTC-USD?start=yesterday",
                "BTC-USD?limit=0",
                "BTC-USD?limit=999999999",
                "BTC-USD?start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z",
                "$$$",
            )
        }
    assert (answer["key"], answer["count"]) == ("BTC/USD", 2)
    first, second = answer["data"]
    assert first["timestamp"] < second["timestamp"]
    assert first["spread"] == round(first["ask"] - first["bid"], 8)
    assert {"last_price", "volume_24h", "price_change_24h", "price_change_percent_24h"} <= set(
        first
    )
    assert empty["count"] == 0
    for query, response in errors.items():
        assert response.status_code == 400, query
        assert "error" in response.json()


async def test_snapshots_without_postgres_are_a_503_saying_so() -> None:
    async with _served(None) as (_, http):
        response = await http.get("/api/v1/snapshots/BTC-USD")
    assert response.status_code == 503
    assert response.json()["error"] == "postgres_not_configured"


async def test_catalogue_rows_of_symbols_no_longer_simulated_turn_inactive(
    postgres_database: str, postgres_schema: str
) -> None:
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        ensure_schema(conn, postgres_schema)
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.symbols (symbol, base_currency, quote_currency, is_active) "
                "VALUES ('XRP/USD', 'XRP', 'USD', true)"
            ).format(sql.Identifier(postgres_schema))
        )
    async with _served(postgres_database, postgres_schema) as (_, http):
        active = (await http.get("/api/v1/symbols?active=true")).json()
        inactive = (await http.get("/api/v1/symbols?active=false")).json()
    assert [s["symbol"] for s in active["symbols"]] == ["BTC/USD", "ETH/USD"]
    assert [s["symbol"] for s in inactive["symbols"]] == ["XRP/USD"]


async def test_price_feeds_of_another_writer_still_read_as_ticks(
    postgres_database: str, postgres_schema: str
) -> None:
    start = _old_minute()
    async with _served(postgres_database, postgres_schema) as (_, http):
        with psycopg.connect(postgres_database, autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.price_feeds (symbol, price, timestamp, metadata) "
                    "VALUES ('BTC/USD', 41000.5, to_timestamp(%s / 1000.0), '[1, 2]')"
                ).format(sql.Identifier(postgres_schema)),
                (start,),
            )
        answer = await http.get(
            f"/api/v1/prices/BTC-USD/history?interval=tick&start={start}&end={start + 1}"
        )
    assert answer.status_code == 200
    (tick,) = answer.json()["data"]
    assert (tick["price"], tick["bid"], tick["ask"]) == (41000.5, 41000.5, 41000.5)
    assert tick["timestamp_ns"] == start * 1_000_000

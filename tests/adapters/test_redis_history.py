"""Redis history: round trip, REST reads, warm restart, degraded mode and recovery.

Every test runs its own ``redis-server`` (the ``redis_server`` fixture) on a
free port, so tests never share state or touch the machine's Redis.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import trio

from mdactors.adapters.breaker import CircuitBreaker
from mdactors.adapters.redis_history import (
    RedisHistory,
    decode_tick,
    encode_tick,
    redis_client,
)
from mdactors.app import Service, build_service
from mdactors.domain.candles import Candle
from mdactors.domain.tick import Tick
from mdactors.settings import load_settings
from tests.conftest import ROOT, TEST_ENV, RedisServer, running_service, wait_for

KEY = "BTC/USD"


def redis_env(url: str, **extra: str) -> dict[str, str]:
    """Service env with Redis history, fast ticks, quick retries."""
    return {
        "REDIS_URL": url,
        "DEFAULT_SYMBOLS": "BTC/USD,ETH/USD",
        "PRICE_UPDATE_INTERVAL": "20ms",
        "REDIS_TIMEOUT": "500ms",
        "REDIS_BREAKER_TIMEOUT": "200ms",
        **extra,
    }


def make_ticks(symbol: str, count: int, start_ns: int, step_ns: int = 1_000_000) -> list[Tick]:
    return [
        Tick(symbol, i + 1, 100.0 + i, 99.9 + i, 100.1 + i, 0.5, start_ns + i * step_ns, 1.0,
             1.0, 200.0, 50.0, 10.0 + i)
        for i in range(count)
    ]  # fmt: skip


def store(server: RedisServer, url: str | None = None, **options: int) -> RedisHistory:
    return RedisHistory(
        redis_client(url or server.url, 0.5),
        CircuitBreaker("redis", 5, 0.2),
        flush_interval=0.001,
        **options,
    )


@asynccontextmanager
async def writing(history: RedisHistory) -> AsyncIterator[RedisHistory]:
    async with trio.open_nursery() as nursery:
        await nursery.start(history.run)
        yield history
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def client_of(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://127.0.0.1:{service.ports['http']}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        yield client


def history_of(service: Service) -> RedisHistory:
    history = service.context.history
    assert isinstance(history, RedisHistory)
    return history


async def readiness(http: httpx.AsyncClient) -> tuple[int, dict[str, object]]:
    response = await http.get("/api/v1/ready")
    return response.status_code, response.json()["checks"]["history"]


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


async def test_ticks_latest_and_candles_round_trip(redis_server: RedisServer) -> None:
    history = store(redis_server)
    assert history.warm_start([KEY]) == {}
    now_ns = time.time_ns()
    ticks = make_ticks(KEY, 250, now_ns - 10**9)
    candle = Candle(KEY, "1m", 1_700_000_040_000, 1.0, 2.0, 0.5, 1.5, 3.0, 7, True)
    async with writing(history):
        history.record_ticks(ticks)
        history.record_candles([candle])
        await wait_for(lambda: history.persisted == {"tick": 250, "candle": 1})
    admin = redis_server.client()
    assert admin.zcard(f"market_data:ticks:{KEY}") == 250
    assert decode_tick(KEY, admin.hget("market_data:latest", KEY)).price == ticks[-1].price
    fresh = store(redis_server)  # empty local copy: everything below comes from Redis
    assert fresh.warm_start([KEY]) == {KEY: ticks[-1].price}
    got = await fresh.ticks(KEY, ticks[10].ts_ns, ticks[20].ts_ns, 5)
    assert [encode_tick(t) for t in got] == [encode_tick(t) for t in ticks[16:21]]
    assert await fresh.candles(KEY, "1m", 0, 2 * 10**12, 10) == [candle]


async def test_retention_keeps_the_newest_ticks(redis_server: RedisServer) -> None:
    history = store(redis_server, tick_capacity=100)
    history.warm_start([KEY])
    ticks = make_ticks(KEY, 300, time.time_ns())
    async with writing(history):
        history.record_ticks(ticks)
        await wait_for(lambda: history.persisted["tick"] == 300)
    stored = redis_server.client().zrange(f"market_data:ticks:{KEY}", 0, -1)
    assert [decode_tick(KEY, raw).seq for raw in stored] == list(range(201, 301))


async def test_rest_history_is_served_from_redis(redis_server: RedisServer) -> None:
    an_hour_ago = time.time_ns() - 3_600 * 10**9
    old = make_ticks(KEY, 5, an_hour_ago)
    redis_server.client().zadd(
        f"market_data:ticks:{KEY}", {encode_tick(t): t.ts_ns // 1_000 for t in old}
    )
    async with running_service(redis_env(redis_server.url)) as service, client_of(service) as http:
        start_ms, end_ms = an_hour_ago // 10**6, an_hour_ago // 10**6 + 1_000
        response = await http.get(
            f"/api/v1/prices/{KEY}/history",
            params={"interval": "tick", "start": start_ms, "end": end_ms},
        )
        assert response.status_code == 200
        assert [row["price"] for row in response.json()["data"]] == [t.price for t in old]
        status, check = await readiness(http)
        assert status == 200
        assert check["backend"] == "redis"
        assert check["status"] == "ok"


async def test_restart_continues_from_the_last_stored_price(redis_server: RedisServer) -> None:
    env = redis_env(redis_server.url)
    async with running_service(env) as first:
        history = history_of(first)
        await wait_for(lambda: history.persisted["tick"] >= 20)
    (last,) = await history.local.ticks(KEY, 0, 2**62, 1)  # the last tick the first run recorded
    stored = decode_tick(KEY, redis_server.client().hget("market_data:latest", KEY))
    assert stored.ts_ns == last.ts_ns  # the final flush on shutdown wrote it
    second = build_service(load_settings(environ={**TEST_ENV, **env}, dotenv=None))
    assert second.context.market.latest(KEY).price == stored.price
    # History ends where the live feed continues: the forming minute is at the last
    # stored price, opening where the stored minutes end (the last closed one).
    last_closed, forming = second.context.recorder.day_closes(KEY, 1)
    assert forming == stored.price
    assert second.context.recorder.open_candle(KEY, "1m").open == last_closed


async def test_restart_with_another_seed_continues_the_stored_minutes(
    redis_server: RedisServer,
) -> None:
    env = redis_env(redis_server.url, BACKFILL_DAYS="2", SEED="11")
    async with running_service(env) as first:
        history = history_of(first)
        await wait_for(lambda: history.persisted["candle"] > 1_000)
    client = redis_server.client()
    oldest_start = int(client.zrange(f"market_data:candles:{KEY}:1m", 0, 0, withscores=True)[0][1])
    second = build_service(load_settings(environ={**TEST_ENV, **env, "SEED": "12"}, dotenv=None))
    around = await second.context.view.candles(
        KEY, "1m", oldest_start - 5 * 60_000, oldest_start + 5 * 60_000, 11
    )
    assert [c.start_ms - oldest_start for c in around] == [m * 60_000 for m in range(-5, 6)]
    # The second run's own history runs into the first run's stored minutes without a jump.
    before, stored = around[4], around[5]
    assert before.close == stored.open


async def test_unreadable_or_absurd_stored_minutes_do_not_stop_the_start(
    redis_server: RedisServer,
) -> None:
    env = redis_env(redis_server.url)
    client = redis_server.client()
    minute = (time.time_ns() // 1_000_000 - 3_600_000) // 60_000 * 60_000
    key = f"market_data:candles:{KEY}:1m"
    client.zadd(key, {json.dumps([minute, 0, 0, 0, 0, 1, 1]): minute})  # a zero price
    service = build_service(load_settings(environ={**TEST_ENV, **env}, dotenv=None))
    closes = service.context.recorder.day_closes(KEY, 1_440)
    assert all(close > 0 for close in closes)
    client.zadd(key, {"not a candle": minute + 60_000})
    again = build_service(load_settings(environ={**TEST_ENV, **env}, dotenv=None))
    assert len(again.context.recorder.day_closes(KEY, 1_440)) > 1_000


async def test_killed_redis_degrades_then_backlog_is_flushed(redis_server: RedisServer) -> None:
    async with running_service(redis_env(redis_server.url)) as service, client_of(service) as http:
        history = history_of(service)
        await wait_for(lambda: history.up and history.backlog["tick"] == 0)
        redis_server.stop()
        outage_ns = time.time_ns()
        await wait_for(lambda: not history.up)
        status, check = await readiness(http)
        assert (status, check["status"], check["reason"]) == (200, "degraded", "connection")
        await wait_for(lambda: history.backlog["tick"] >= 50)
        body = (await http.get("/metrics")).text
        assert metric(body, "market_data_redis_up") == 0
        assert metric(body, 'market_data_history_backlog{kind="tick"}') >= 50
        prices = await http.get(f"/api/v1/prices/{KEY}/history", params={"interval": "tick"})
        assert prices.status_code == 200 and prices.json()["count"] > 0
        assert (await http.get(f"/api/v1/prices/{KEY}/current")).status_code == 200

        restart_ns = time.time_ns()
        redis_server.start()
        await wait_for(lambda: history.up and history.backlog["tick"] == 0)
        assert (await readiness(http))[1]["status"] == "ok"
        assert history.dropped == {"tick": 0, "candle": 0}
        admin = redis_server.client()
        for key in service.context.market.symbols:
            kept = {raw.decode() for raw in admin.zrange(f"market_data:ticks:{key}", 0, -1)}
            during = await history.local.ticks(key, outage_ns, restart_ns - 1, 10**6)
            assert len(during) >= 10
            assert {encode_tick(t) for t in during} <= kept


async def test_full_backlog_drops_the_oldest_and_counts_them(redis_server: RedisServer) -> None:
    history = store(redis_server, backlog=10)
    history.warm_start([KEY])
    redis_server.stop()
    ticks = make_ticks(KEY, 25, time.time_ns())
    history.record_ticks(ticks)
    assert await history.flush() is False
    assert history.backlog["tick"] == 10
    assert history.dropped["tick"] == 15
    assert history.describe()["status"] == "degraded"
    redis_server.start()
    assert await history.flush() is True
    stored = redis_server.client().zrange(f"market_data:ticks:{KEY}", 0, -1)
    assert [decode_tick(KEY, raw).seq for raw in stored] == list(range(16, 26))


async def test_a_batch_being_written_still_counts_as_backlog(redis_server: RedisServer) -> None:
    history = store(redis_server)
    history.warm_start([KEY])
    history.record_ticks(make_ticks(KEY, 30, time.time_ns()))
    entered, release = threading.Event(), threading.Event()
    write = history._write

    def slow_write(ticks: list[Tick], candles: list[Candle]) -> None:
        entered.set()
        release.wait(5)
        write(ticks, candles)

    history._write = slow_write  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(history.flush)
        await trio.to_thread.run_sync(entered.wait, 5)
        assert history.backlog["tick"] == 30  # taken, not written: still waiting
        release.set()
    assert history.backlog["tick"] == 0
    assert history.persisted["tick"] == 30


async def test_one_log_line_per_state_change(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mdactors.history")
    history = store(redis_server)
    history.warm_start([KEY])
    redis_server.stop()
    for ticks in (make_ticks(KEY, 3, time.time_ns() + i) for i in range(4)):
        history.record_ticks(ticks)
        assert await history.flush() is False
    redis_server.start()
    assert await history.flush() is True
    events = [getattr(r, "event", None) for r in caplog.records if r.name == "mdactors.history"]
    assert events == ["redis_up", "redis_degraded", "redis_up"]
    assert history.errors["connection"] == 4


@pytest.mark.parametrize(
    "commands",
    [["+@read", "+ping"], ["+ping"]],
    ids=["read-only user", "no data commands"],
)
async def test_acl_noperm_degrades_instead_of_crashing(
    redis_server: RedisServer, commands: list[str]
) -> None:
    redis_server.client().acl_setuser(
        "limited", enabled=True, passwords=["+pw"], keys=["*"], commands=commands
    )
    url = f"redis://limited:pw@127.0.0.1:{redis_server.port}/0"
    async with running_service(redis_env(url)) as service, client_of(service) as http:
        await wait_for(lambda: history_of(service).reason == "permission")
        status, check = await readiness(http)
        assert (status, check["status"], check["reason"]) == (200, "degraded", "permission")
        response = await http.get(f"/api/v1/prices/{KEY}/history", params={"interval": "tick"})
        assert response.status_code == 200


async def test_wrong_password_degrades_at_start(redis_server: RedisServer) -> None:
    redis_server.client().acl_setuser(
        "app", enabled=True, passwords=["+right"], keys=["*"], commands=["+@all"]
    )
    url = f"redis://app:wrong@127.0.0.1:{redis_server.port}/0"
    async with running_service(redis_env(url)) as service, client_of(service) as http:
        status, check = await readiness(http)
        assert (status, check["status"], check["reason"]) == (200, "degraded", "auth")
        candles = await http.get(f"/api/v1/prices/{KEY}/history", params={"interval": "1m"})
        assert candles.status_code == 200 and candles.json()["count"] > 0
        await wait_for(lambda: history_of(service).breaker.state.value != "closed")
        body = (await http.get("/metrics")).text
        assert metric(body, 'market_data_redis_errors_total{reason="auth"}') >= 5
        assert metric(body, 'market_data_circuit_breaker_state{dependency="redis"}') > 0


def test_bench_runs(redis_server: RedisServer) -> None:
    bench = ROOT / "bench" / "redis_history.py"
    result = subprocess.run(
        [sys.executable, str(bench), "--seconds", "0.3", "--url", redis_server.url],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "ticks/s persisted" in result.stdout

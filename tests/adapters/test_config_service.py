"""The configuration-service client against a real HTTP server on a loopback port."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

from mdactors.adapters.breaker import BreakerState, CircuitBreaker
from mdactors.adapters.config_service import ConfigClient, keys_for
from mdactors.adapters.discovery import discover
from tests.conftest import RedisServer, running_service, wait_for

TICK_KEY = "market-data.simulation.BTC-USD.tick-interval"
VOL_KEY = "market-data.simulation.volatility-factor"


@dataclass
class FakeConfigService:
    """The ecosystem's configuration service, as far as we use it."""

    values: dict[str, Any] = field(default_factory=dict)
    ttl: int | None = 300
    failing: bool = False
    wrapped: bool = False
    hits: Counter[str] = field(default_factory=Counter)
    url: str = ""


@asynccontextmanager
async def config_service(fake: FakeConfigService) -> AsyncIterator[FakeConfigService]:
    app = QuartTrio("fake-config")

    @app.get("/api/v1/configuration")
    async def configuration() -> Response:
        key = request.args.get("key", "")
        fake.hits[key] += 1
        if fake.failing:
            return Response("boom", status=500)
        if key not in fake.values:
            return Response(json.dumps({"error": "not found"}), status=404)
        body: dict[str, Any] = {"key": key, "value": fake.values[key], "version": 3}
        if fake.ttl is not None:
            body["ttl_seconds"] = fake.ttl
        payload = {"data": body} if fake.wrapped else body
        return Response(json.dumps(payload), content_type="application/json")

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(lambda task_status: serve(app, config, task_status=task_status))
        fake.url = binds[0]
        yield fake
        nursery.cancel_scope.cancel()


def _client(http: httpx.AsyncClient, url: str, clock: list[float]) -> ConfigClient:
    breaker = CircuitBreaker("config_service", 5, 30.0, clock=lambda: clock[0])
    return ConfigClient(url, http, breaker, default_ttl=60.0, clock=lambda: clock[0])


async def test_values_are_cached_for_their_ttl() -> None:
    clock = [0.0]
    fake = FakeConfigService({VOL_KEY: 2.5}, ttl=10)
    async with config_service(fake), httpx.AsyncClient() as http:
        client = _client(http, fake.url, clock)
        await client.refresh(VOL_KEY)
        await client.refresh(VOL_KEY)
        assert fake.hits[VOL_KEY] == 1
        assert client.overrides(["BTC/USD"]).symbols["BTC/USD"].volatility_factor == 2.5
        clock[0] = 11.0
        fake.values[VOL_KEY] = 3.0
        await client.refresh(VOL_KEY)
        assert fake.hits[VOL_KEY] == 2
        assert client.cached(VOL_KEY) == 3.0


async def test_default_ttl_applies_and_the_wrapped_shape_is_accepted() -> None:
    clock = [0.0]
    fake = FakeConfigService({TICK_KEY: "250ms"}, ttl=None, wrapped=True)
    async with config_service(fake), httpx.AsyncClient() as http:
        client = _client(http, fake.url, clock)
        await client.refresh(TICK_KEY)
        assert client.overrides(["BTC/USD"]).symbols["BTC/USD"].tick_interval == 0.25
        clock[0] = 59.0
        await client.refresh(TICK_KEY)
        assert fake.hits[TICK_KEY] == 1


async def test_per_symbol_keys_win_and_bad_values_are_ignored() -> None:
    clock = [0.0]
    values = {
        VOL_KEY: 2.0,
        "market-data.simulation.ETH-USD.volatility-factor": 0.5,
        "market-data.simulation.spread-factor": -3,
        TICK_KEY: 100,
    }
    fake = FakeConfigService(values)
    async with config_service(fake), httpx.AsyncClient() as http:
        client = _client(http, fake.url, clock)
        for key in keys_for(["BTC/USD", "ETH/USD"]):
            await client.refresh(key)
    overrides = client.overrides(["BTC/USD", "ETH/USD"]).symbols
    assert overrides["BTC/USD"].volatility_factor == 2.0
    assert overrides["ETH/USD"].volatility_factor == 0.5
    assert overrides["BTC/USD"].spread_factor == 1.0
    assert overrides["BTC/USD"].tick_interval == 0.1
    assert overrides["ETH/USD"].tick_interval is None


async def test_failures_keep_the_last_value_and_open_the_breaker() -> None:
    clock = [0.0]
    fake = FakeConfigService({VOL_KEY: 4.0}, ttl=1)
    async with config_service(fake), httpx.AsyncClient() as http:
        client = _client(http, fake.url, clock)
        await client.refresh(VOL_KEY)
        fake.failing = True
        for step in range(1, 6):
            clock[0] = 10.0 * step
            await client.refresh(VOL_KEY)
        assert client.breaker.state is BreakerState.OPEN
        assert client.cached(VOL_KEY) == 4.0
        hits = fake.hits[VOL_KEY]
        clock[0] = 65.0
        await client.refresh(VOL_KEY)
        assert fake.hits[VOL_KEY] == hits, "an open breaker makes no call"
        fake.failing = False
        clock[0] = 81.0
        await client.refresh(VOL_KEY)
        assert client.breaker.state is BreakerState.CLOSED


async def test_unreachable_service_does_not_break_the_client() -> None:
    clock = [0.0]
    async with httpx.AsyncClient(timeout=2) as http:
        client = _client(http, "http://127.0.0.1:1", clock)
        await client.refresh(VOL_KEY)
    assert client.breaker.consecutive_failures == 1
    assert client.cached(VOL_KEY) is None


async def test_service_applies_configuration_live() -> None:
    perp_tick_key = "market-data.simulation.BTC-USD-PERP.tick-interval"
    fake = FakeConfigService({TICK_KEY: "20ms", VOL_KEY: 1.5, perp_tick_key: "1s"}, ttl=1)
    async with config_service(fake), running_service({"CONFIG_SERVICE_URL": fake.url}) as service:
        actor = service.context.market.actor("BTC/USD")
        perpetual = service.context.market.actor("BTC/USD-PERP")
        await wait_for(lambda: actor.interval == 0.02)
        assert actor.volatility_factor == 1.5
        assert service.context.market.actor("ETH/USD").interval == 0.05
        # A perpetual ticks with its spot, whatever its own key says.
        await wait_for(lambda: perpetual.interval == 0.02)
        fake.values[TICK_KEY] = "30ms"
        await wait_for(lambda: actor.interval == 0.03, within=10)
        await wait_for(lambda: perpetual.interval == 0.03)
        base = f"http://127.0.0.1:{service.ports['http']}"
        async with httpx.AsyncClient(base_url=base) as http:
            ready = (await http.get("/api/v1/ready")).json()
        assert ready["checks"]["config_service"]["breaker"] == "closed"


async def test_service_registers_in_discovery_and_deregisters_on_drain(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    env = {"REDIS_URL": redis_server.url, "SERVICE_INSTANCE_NAME": "md-test-1"}
    async with running_service(env) as service:
        await wait_for(lambda: bool(discover(client, "market-data-simulator")))
        (record,) = discover(client, "market-data-simulator")
        assert record["instance_id"] == "md-test-1"
        assert record["address"] == "127.0.0.1"
        assert record["http_port"] == service.ports["http"]
        assert record["grpc_port"] == service.ports["grpc"]
        assert (record["health"], record["status"]) == ("healthy", "active")
    assert discover(client, "market-data-simulator") == []
    assert client.smembers("service_list:market-data-simulator") == set()

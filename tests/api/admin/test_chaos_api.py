"""The /chaos and /debug APIs on the real service: validation, auth, end-to-end scenarios."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio

from mdactors.app import Service
from mdactors.engine.subscription import Subscription
from tests.conftest import running_service, wait_for

FAST = {"PRICE_UPDATE_INTERVAL": "20ms"}


@asynccontextmanager
async def _client(
    env: Mapping[str, str] | None = None, token: str | None = None
) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with running_service({**FAST, **(env or {})}) as service:
        base = f"http://127.0.0.1:{service.ports['http']}"
        async with httpx.AsyncClient(base_url=base, timeout=10, headers=headers) as client:
            yield service, client


def _metric(text: str, name: str, labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return None


VALID = [
    ("/chaos/price-shock", {"symbol": "BTC/USD", "shock_percentage": -5}),
    ("/chaos/market-crash", {"affect_symbols": ["BTC", "eth-usd"], "shock_percentage": -10}),
    ("/chaos/rally", {"symbol": "SOL/USD", "shock_percentage": 8}),
    ("/chaos/stablecoin-depeg", {"target_deviation": -0.05, "duration_seconds": 3600}),
    ("/chaos/volatility-spike", {"symbol": "ETH/USD", "volatility_multiplier": 4}),
    ("/chaos/gradual-divergence",
     {"base_symbol": "BTC/USD", "target_symbol": "ETH/USD", "max_spread_bps": 150}),
    ("/chaos/correlation-break", {"symbol": "ADA/USD"}),
    ("/chaos/consolidation", {"symbol": "DOT/USD", "volatility_damping": 0.1}),
    ("/chaos/mean-reversion", {"symbol": "DOT/USD", "half_life_seconds": 20}),
    ("/chaos/feed-disruption",
     {"affect_symbols": ["ADA/USD"], "latency_ms": 200, "jitter_ms": 50,
      "packet_loss_percentage": 10}),
]  # fmt: skip

INVALID = [
    ("/chaos/price-shock", {"symbol": "BTC/USD", "shock_percentage": -60}, "shock_percentage"),
    ("/chaos/price-shock", {"symbol": "BTC/USD", "shock_percentage": 0}, "shock_percentage"),
    ("/chaos/price-shock", {"symbol": "BTC/USD"}, "shock_percentage"),
    ("/chaos/price-shock", {"symbol": "BTC/USD", "shock_percentage": "-5"}, "shock_percentage"),
    ("/chaos/price-shock", {"symbol": "NOPE/USD", "shock_percentage": -5}, "symbol"),
    ("/chaos/price-shock", {"symbol": "B@D", "shock_percentage": -5}, "symbol"),
    ("/chaos/price-shock", {"symbol": "BTC/USD", "shock_percentage": -5, "bogus": 1}, "bogus"),
    ("/chaos/price-shock",
     {"symbol": "BTC/USD", "shock_percentage": -5, "duration_seconds": 1e9}, "duration_seconds"),
    ("/chaos/price-shock",
     {"symbol": "BTC/USD", "shock_percentage": -5, "duration_seconds": -1}, "duration_seconds"),
    ("/chaos/price-shock",
     {"symbol": "BTC/USD", "shock_percentage": -5, "recovery_time_seconds": 1e9},
     "recovery_time_seconds"),
    ("/chaos/price-shock",
     {"symbol": "BTC/USD", "shock_percentage": -5, "onset": "gradual", "onset_seconds": 100,
      "duration_seconds": 10}, "onset_seconds"),
    ("/chaos/price-shock",
     {"symbol": "BTC/USD", "shock_percentage": -5, "onset": "slowly"}, "onset"),
    ("/chaos/market-crash", {"affect_symbols": ["BTC/USD", "ZZZ/USD"]}, "affect_symbols.1"),
    ("/chaos/market-crash", {"affect_symbols": []}, "affect_symbols"),
    ("/chaos/market-crash", {"shock_percentage": 10}, "shock_percentage"),
    ("/chaos/market-crash", {"correlation": 1.5}, "correlation"),
    ("/chaos/rally", {"symbol": "BTC/USD", "shock_percentage": -5}, "shock_percentage"),
    ("/chaos/stablecoin-depeg", {"target_deviation": -0.9}, "target_deviation"),
    ("/chaos/volatility-spike", {"symbol": "BTC/USD", "volatility_multiplier": 100},
     "volatility_multiplier"),
    ("/chaos/gradual-divergence", {"base_symbol": "BTC/USD", "target_symbol": "btc-usd"},
     "target_symbol"),
    ("/chaos/gradual-divergence",
     {"base_symbol": "BTC/USD", "target_symbol": "ETH/USD", "max_spread_bps": 9000},
     "max_spread_bps"),
    ("/chaos/feed-disruption", {"symbol": "BTC/USD", "latency_ms": 1e6}, "latency_ms"),
    ("/chaos/feed-disruption", {"symbol": "BTC/USD", "packet_loss_percentage": 101},
     "packet_loss_percentage"),
    ("/chaos/feed-disruption", {}, "symbol"),
    ("/chaos/feed-disruption", {"symbol": "BTC/USD", "mode": "explode"}, "mode"),
    ("/chaos/circuit-breaker/reset", {"symbol": "XXX/USD"}, "symbol"),
]  # fmt: skip


async def test_every_scenario_route_starts_a_scenario() -> None:
    async with _client() as (_, client):
        ids = []
        for path, body in VALID:
            response = await client.post(path, json=body)
            assert response.status_code == 201, (path, response.text)
            view = response.json()
            assert view["phase"] in ("active", "onset") and view["symbols"]
            ids.append(view["id"])
        listed = (await client.get("/chaos/active-scenarios")).json()
        assert [s["id"] for s in listed["scenarios"]] == ids and listed["count"] == len(ids)


async def test_invalid_bodies_answer_422_naming_the_field() -> None:
    async with _client() as (_, client):
        for path, body, field in INVALID:
            response = await client.post(path, json=body)
            assert response.status_code == 422, (path, body, response.text)
            payload = response.json()
            assert payload["error"] == "invalid_field" and payload["field"] == field, payload
        for bad in (b"{not json", b'{"symbol":"\xff\xfe"}', b"[" * 100_000 + b"]" * 100_000):
            response = await client.post(
                "/chaos/price-shock", content=bad, headers={"Content-Type": "application/json"}
            )
            assert response.status_code in (400, 422) and response.json()["error"]
        assert (await client.get("/chaos/active-scenarios")).json()["count"] == 0


async def test_a_bad_symbol_is_a_422_in_the_http_error_tables_words() -> None:
    async with _client() as (service, client):
        unknown = await client.post(
            "/chaos/price-shock", json={"symbol": "nope-usd", "shock_percentage": -5}
        )
        malformed = await client.post("/chaos/circuit-breaker/reset", json={"symbol": "B@D"})
        rest = await client.get("/api/v1/prices/NOPE-USD/current")
        rest_malformed = await client.get("/api/v1/prices/B@D/current")
    # REST answers the engine error itself (HTTP_ERRORS); chaos names the field, same words.
    assert rest.status_code == 404 and rest.json()["error"] == "unknown_symbol"
    assert unknown.status_code == 422
    assert unknown.json() == {
        "error": "invalid_field",
        "message": f"symbol: {rest.json()['message']}",
        "field": "symbol",
    }
    assert "known: " + ", ".join(service.context.market.symbols) in unknown.json()["message"]
    assert rest_malformed.status_code == 400 and rest_malformed.json()["error"] == "invalid_symbol"
    assert malformed.status_code == 422 and malformed.json()["field"] == "symbol"
    assert malformed.json()["message"] == f"symbol: {rest_malformed.json()['message']}"
    assert "B@D" in malformed.json()["message"]


async def test_admin_token_is_required_and_never_echoed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-token-value"
    async with _client({"ADMIN_TOKEN": secret}) as (_, client):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": secret}):
            for path in ("/chaos/active-scenarios", "/debug/subscribers"):
                response = await client.get(path, headers=headers)
                assert response.status_code == 401, (path, headers)
                assert response.headers["www-authenticate"].startswith("Bearer")
                assert secret not in response.text
        response = await client.post(
            "/chaos/price-shock", json={"symbol": "BTC/USD", "shock_percentage": -1}
        )
        assert response.status_code == 401
        good = {"Authorization": f"Bearer {secret}"}
        assert (await client.get("/chaos/active-scenarios", headers=good)).status_code == 200
        assert (await client.get("/debug/subscribers", headers=good)).status_code == 200
        assert (await client.get("/api/v1/health")).status_code == 200  # production API open
    assert secret not in caplog.text


async def test_chaos_and_debug_are_404_when_disabled() -> None:
    async with _client({"CHAOS_ENABLED": "false"}) as (_, client):
        shock = {"symbol": "BTC/USD", "shock_percentage": -5}
        assert (await client.post("/chaos/price-shock", json=shock)).status_code == 404
        assert (await client.get("/chaos/active-scenarios")).status_code == 404
        assert (await client.get("/debug/price-buffers")).status_code == 404


UNKNOWN_ADMIN_PATHS = ("/chaos", "/chaos/", "/chaos/no-such-route", "/debug/nope/deeper")


async def test_without_the_token_unknown_admin_paths_are_401_like_known_ones() -> None:
    secret = "s3cret-token-value"
    async with _client({"ADMIN_TOKEN": secret}) as (_, client):
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            for path in UNKNOWN_ADMIN_PATHS:
                response = await client.get(path, headers=headers)
                assert response.status_code == 401, (path, headers)
                assert response.headers["www-authenticate"].startswith("Bearer")
                assert response.json()["error"] == "unauthorized"
            # A wrong method on a known route does not reveal it either (405).
            response = await client.get("/chaos/price-shock", headers=headers)
            assert response.status_code == 401
        # Paths that only share the prefix's letters are not admin paths.
        assert (await client.get("/chaosx")).status_code == 404
        good = {"Authorization": f"Bearer {secret}"}
        for path in UNKNOWN_ADMIN_PATHS:
            response = await client.get(path, headers=good)
            assert response.status_code == 404, path
            assert response.json()["error"] == "not_found"
        assert (await client.get("/chaos/price-shock", headers=good)).status_code == 405


async def test_without_a_token_configured_unknown_admin_paths_are_404() -> None:
    async with _client() as (_, client):
        for path in UNKNOWN_ADMIN_PATHS:
            assert (await client.get(path)).status_code == 404, path


async def test_when_disabled_admin_paths_are_404_even_with_a_token_configured() -> None:
    async with _client({"CHAOS_ENABLED": "false", "ADMIN_TOKEN": "t0ken"}) as (_, client):
        for path in ("/chaos/active-scenarios", "/debug/subscribers", *UNKNOWN_ADMIN_PATHS):
            assert (await client.get(path)).status_code == 404, path


async def test_openapi_document_leaves_out_the_admin_routes() -> None:
    async with _client() as (_, client):
        paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/api/v1/market/prices" in paths
    admin = [path for path in paths if path.startswith(("/chaos", "/debug"))]
    assert admin == []


async def test_debug_routes_show_state() -> None:
    async with _client() as (service, client):
        await client.post("/chaos/volatility-spike", json={"symbol": "BTC", "duration_seconds": 5})
        await trio.sleep(0.2)
        buffers = (await client.get("/debug/price-buffers", params={"limit": 3})).json()
        assert len(buffers["BTC/USD"]["recent"]) == 3
        assert buffers["BTC/USD"]["overlay"]["scenarios"]
        assert buffers["ETH/USD"]["overlay"] is None
        timeline = (await client.get("/debug/scenario-timeline")).json()
        assert timeline["active"][0]["scenario_type"] == "volatility_spike"
        matrix = (await client.get("/debug/correlation-matrix")).json()
        assert matrix["matrix"]["BTC/USD"]["BTC/USD"] == 1.0
        minutes = await client.get("/debug/correlation-matrix", params={"source": "minutes"})
        assert minutes.status_code == 200
        subscription = Subscription({"BTC/USD": service.context.market.actor("BTC/USD").topic})
        with service.context.streams.open("sse", subscription):
            table = (await client.get("/debug/subscribers")).json()
        assert table["subscribers"] == {"BTC/USD": {"sse": 1}}


async def _sse_prices(stream: httpx.Response) -> AsyncIterator[float]:
    """Prices of the ``price`` events of an SSE response."""
    event = ""
    async for line in stream.aiter_lines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and event == "price":
            yield float(json.loads(line.split(":", 1)[1])["price"])


async def test_price_shock_end_to_end_over_the_sse_stream() -> None:
    async with _client() as (service, client):
        async with client.stream("GET", "/api/v1/stream/prices", params={"assets": "BTC"}) as sse:
            prices = _sse_prices(sse)
            before = [await anext(prices) for _ in range(5)][-1]
            response = await client.post(
                "/chaos/price-shock",
                json={"symbol": "BTC/USD", "shock_percentage": -15,
                      "duration_seconds": 1.5, "recovery_time_seconds": 0.5},
            )  # fmt: skip
            assert response.status_code == 201
            shock_id = response.json()["id"]
            listed = (await client.get("/chaos/active-scenarios")).json()["scenarios"]
            assert [s["id"] for s in listed] == [shock_id]
            metrics = (await client.get("/metrics")).text
            labels = 'scenario_type="price_shock",symbol="BTC/USD"'
            assert _metric(metrics, "market_data_scenario_active", labels) == 1.0
            with trio.fail_after(3):
                low = await anext(prices)
                while low > before * 0.9:
                    low = await anext(prices)
            with trio.fail_after(5):
                price = await anext(prices)
                while abs(price / before - 1.0) > 0.02:
                    price = await anext(prices)
        await wait_for(lambda: not service.context.scenarios.active())
        assert (await client.get("/chaos/active-scenarios")).json()["count"] == 0
        metrics = (await client.get("/metrics")).text
        assert _metric(metrics, "market_data_scenario_active", labels) == 0.0


async def test_stopping_a_scenario_ends_it() -> None:
    async with _client() as (_, client):
        spike = {"symbol": "ETH/USD", "duration_seconds": 3600, "recovery_time_seconds": 0.2}
        scenario_id = (await client.post("/chaos/volatility-spike", json=spike)).json()["id"]
        stopped = await client.delete(f"/chaos/stop-scenario/{scenario_id}")
        assert stopped.status_code == 200 and stopped.json()["stopped"] is True
        assert stopped.json()["phase"] == "recovery"
        await trio.sleep(0.3)
        assert (await client.get("/chaos/active-scenarios")).json()["count"] == 0
        again = await client.delete(f"/chaos/stop-scenario/{scenario_id}")
        assert again.status_code == 404 and again.json()["error"] == "unknown_scenario"


async def test_feed_outage_silences_a_symbol_and_then_resumes() -> None:
    async with _client() as (service, client):
        market = service.context.market
        eth, btc = market.actor("ETH/USD").topic, market.actor("BTC/USD").topic
        with Subscription({"ETH/USD": eth}) as subscription:
            # 1.5 s: the checks below run ~0.4 s in, with room for a loaded machine.
            outage = {"symbol": "ETH/USD", "mode": "outage", "duration_seconds": 1.5}
            response = await client.post("/chaos/feed-disruption", json=outage)
            assert response.status_code == 201
            subscription.take(1_000)
            btc_before = btc.published
            await trio.sleep(0.4)
            assert subscription.take(1_000) == []  # silence on ETH
            assert btc.published > btc_before + 5  # BTC unaffected
            metrics = (await client.get("/metrics")).text
            staleness = _metric(metrics, "market_data_staleness_seconds", 'symbol="ETH/USD"')
            assert staleness is not None and staleness > 0.3
            with trio.fail_after(4):
                await subscription.wait()
            assert subscription.take(1_000)


async def test_price_breaker_halts_and_reset_resumes() -> None:
    env = {"PRICE_BREAKER_THRESHOLD": "10", "PRICE_BREAKER_TIMEOUT": "1h"}
    async with _client(env) as (service, client):
        topic = service.context.market.actor("BTC/USD").topic
        await trio.sleep(0.2)
        shock = {"symbol": "BTC/USD", "shock_percentage": -15, "duration_seconds": 600}
        assert (await client.post("/chaos/price-shock", json=shock)).status_code == 201
        await wait_for(lambda: bool(service.context.market.halted()))
        published = topic.published
        ready: dict[str, Any] = (await client.get("/api/v1/ready")).json()
        assert "BTC/USD" in ready["checks"]["market"]["halted_symbols"]
        health = (await client.get("/api/v1/health")).json()
        assert "BTC/USD" in health["halted_symbols"]
        metrics = (await client.get("/metrics")).text
        assert _metric(metrics, "market_data_circuit_breaker_open", 'symbol="BTC/USD"') == 1.0
        assert _metric(metrics, "market_data_circuit_breaker_open", 'symbol="ETH/USD"') == 0.0
        await trio.sleep(0.2)
        assert topic.published == published  # halted
        reset = await client.post("/chaos/circuit-breaker/reset", json={"symbol": "BTC"})
        # Priced from BTC/USD, the cross and the perpetual fell as far and halted too.
        assert reset.json()["reset"] == ["BTC/USD"]
        assert set(reset.json()["halted_symbols"]) == {"BTC/ETH", "BTC/USD-PERP"}
        await wait_for(lambda: topic.published > published + 3)


async def test_sse_stream_reports_feed_status_changes() -> None:
    async with _client() as (_, client):
        async with client.stream("GET", "/api/v1/stream/prices", params={"assets": "ETH"}) as sse:
            # The stream looks at the feed's status 1 s after its last tick: 3 s of outage
            # leaves that look room to run late.
            outage = {"symbol": "ETH/USD", "mode": "outage", "duration_seconds": 3}
            assert (await client.post("/chaos/feed-disruption", json=outage)).status_code == 201
            statuses = []
            event = ""
            with trio.fail_after(8):
                async for line in sse.aiter_lines():
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:") and event == "status":
                        statuses.append(json.loads(line.split(":", 1)[1]))
                        if statuses[-1]["status"] == "live":
                            break
        assert [s["status"] for s in statuses] == ["outage", "live"]
        assert statuses[0]["asset"] == "ETH"

"""The SSE price stream and the Prometheus endpoint."""

from __future__ import annotations

import json

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from mdactors.app import Service
from tests.conftest import read_events, wait_for


async def test_sse_sends_retry_then_a_snapshot_then_price_events_every_tick(
    service: Service, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        async with http.stream("GET", "/api/v1/stream/prices?assets=BTC,ETH") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = await read_events(response.aiter_lines(), 12)
    assert events[0]["retry"] == "3000"
    snapshot = events[1]
    assert snapshot["event"] == "prices"
    assert set(json.loads(snapshot["data"])) == {"BTC", "ETH"}
    prices = [event for event in events[2:] if event["event"] == "price"]
    assert len(prices) >= 8
    seqs: dict[str, list[int]] = {}
    for event in prices:
        data = json.loads(event["data"])
        assert set(data) == {"asset", "price", "timestamp", "data"}
        assert set(data["data"]) == {"price", "timestamp", "change_24h", "change_percent_24h"}
        asset, seq = event["id"].rsplit("-", 1)
        assert asset == data["asset"]
        seqs.setdefault(asset, []).append(int(seq))
    for values in seqs.values():
        assert values == sorted(values)


async def test_sse_stream_is_counted_and_released(
    service: Service, http: httpx.AsyncClient
) -> None:
    streams = service.context.streams
    with trio.fail_after(10):
        async with http.stream("GET", "/api/v1/stream/prices") as response:
            await read_events(response.aiter_lines(), 3)
            assert streams.active == 1
            assert streams.subscribers[("BTC/USD", "sse")] == 1
    await wait_for(lambda: streams.active == 0)
    assert streams.subscribers[("BTC/USD", "sse")] == 0


async def test_sse_ends_with_an_end_event_on_drain(
    service: Service, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        async with http.stream("GET", "/api/v1/stream/prices?assets=SOL") as response:
            lines = response.aiter_lines()
            await read_events(lines, 2)
            service.context.lifecycle.begin_drain()
            events = await read_events(lines, 100)
    assert events[-1]["event"] == "end"


async def test_metrics_parse_and_carry_red_and_feed_families(
    service: Service, http: httpx.AsyncClient
) -> None:
    await http.get("/api/v1/market/prices")
    await http.get("/api/v1/prices/NOPE-USD/current")
    await http.get("/no/such/route/123")
    response = await http.get("/metrics")
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    requests = families["http_requests"].samples
    routes = {sample.labels["route"] for sample in requests}
    assert "/api/v1/market/prices" in routes
    # The old service's form, which its dashboards select on.
    assert "/api/v1/prices/:symbol/current" in routes
    assert "unknown" in routes
    assert not any("123" in route for route in routes)
    sample = next(s for s in requests if s.labels["route"] == "/api/v1/market/prices")
    assert sample.labels["service"] == "market-data-simulator"
    assert {"instance", "version", "method", "code"} <= set(sample.labels)
    errors = families["http_request_errors"].samples
    assert any(s.labels["code"] == "404" for s in errors)
    buckets = {
        s.labels["le"]
        for s in families["http_request_duration_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert {"0.005", "10.0"} <= buckets
    updates = {s.labels["symbol"]: s.value for s in families["market_data_price_updates"].samples}
    assert set(updates) == set(service.context.market.symbols)
    assert all(value >= 1 for value in updates.values())
    staleness = families["market_data_staleness_seconds"].samples
    assert all(0 <= s.value < 5 for s in staleness)
    assert "process_resident_memory_bytes" in families or "process_resident_memory" in families


async def test_price_update_counter_grows(service: Service, http: httpx.AsyncClient) -> None:
    def btc_updates(text: str) -> float:
        for family in text_string_to_metric_families(text):
            if family.name == "market_data_price_updates":
                for s in family.samples:
                    if s.labels["symbol"] == "BTC/USD" and s.name.endswith("_total"):
                        return s.value
        pytest.fail("no BTC/USD sample")

    first = btc_updates((await http.get("/metrics")).text)
    target = service.context.market.latest("BTC/USD").seq + 2
    await wait_for(lambda: service.context.market.latest("BTC/USD").seq >= target)
    assert btc_updates((await http.get("/metrics")).text) > first

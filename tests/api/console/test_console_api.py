"""What the console needs from the service: its page and files, its start-up config, the
chaos API's published schema and the "who is listening" endpoint (real server, httpx)."""

from __future__ import annotations

import importlib.util
import json

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import open_websocket_url

from mdactors.adapters.latency_histogram import quantile
from mdactors.adapters.loop_lag import LoopLag
from mdactors.api.admin.chaos_bodies import BreakerResetBody
from mdactors.api.admin.chaos_orders import ORDERS
from mdactors.api.console import STATIC
from mdactors.api.http.listeners import ListenerWindow, Reading
from mdactors.app import Service
from tests.conftest import ROOT, RedisServer, running_service, wait_for

VENDOR = STATIC / "vendor" / "lightweight-charts"


def _client(service: Service, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    base = f"http://127.0.0.1:{service.ports['http']}"
    return httpx.AsyncClient(base_url=base, timeout=10, headers=headers)


async def test_console_page_and_its_files_are_served(http: httpx.AsyncClient) -> None:
    page = await http.get("/console")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    scripts = [
        "/console/static/console.js",
        "/console/static/vendor/lightweight-charts/lightweight-charts.standalone.production.js",
    ]
    for path in [*scripts, "/console/static/console.css"]:
        assert f'"{path}"' in page.text, path
        response = await http.get(path)
        assert response.status_code == 200, path
    for path in scripts:
        response = await http.get(path)
        assert "javascript" in response.headers["content-type"]
        assert response.headers["cache-control"] == "no-cache"
        again = await http.get(path, headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304
    assert (await http.get("/console/static/nope.js")).status_code == 404


async def test_console_config_names_the_bound_ws_port_and_the_chaos_state(
    service: Service, http: httpx.AsyncClient
) -> None:
    config = (await http.get("/console/config")).json()
    assert config["ws_port"] == service.ports["ws"] != 0
    assert config["symbols"] == service.context.market.symbols
    assert config["chaos"] == {"enabled": True, "reason": None, "token_required": False}


async def test_chaos_schema_has_every_kind_and_the_settings_bounds(
    service: Service, http: httpx.AsyncClient
) -> None:
    schema = (await http.get("/chaos/schema")).json()
    assert [kind["kind"] for kind in schema["kinds"]] == list(ORDERS)
    for kind in schema["kinds"]:
        body, _make = ORDERS[kind["kind"]]
        assert kind["path"] == f"/chaos/{kind['kind']}"
        assert kind["method"] == "POST"
        assert kind["body"] == body.model_json_schema()
    assert schema["breaker_reset"]["path"] == "/chaos/circuit-breaker/reset"
    assert schema["breaker_reset"]["body"] == BreakerResetBody.model_json_schema()
    hours = service.context.settings.scenario_timeout_hours
    assert schema["limits"] == {"max_price_deviation": 0.5, "max_seconds": hours * 3600.0}
    assert "BTC/USD" in schema["symbols"]


async def test_chaos_schema_needs_the_admin_token_and_is_absent_without_chaos() -> None:
    async with (
        running_service({"ADMIN_TOKEN": "s3cret"}) as service,
        _client(service) as anonymous,
        _client(service, "s3cret") as admin,
    ):
        assert (await anonymous.get("/chaos/schema")).status_code == 401
        assert (await admin.get("/chaos/schema")).status_code == 200
        config = (await anonymous.get("/console/config")).json()
        assert config["chaos"]["token_required"] is True
        assert "s3cret" not in json.dumps(config)
    async with running_service({"CHAOS_ENABLED": "false"}) as service, _client(service) as http:
        assert (await http.get("/chaos/schema")).status_code == 404
        chaos = (await http.get("/console/config")).json()["chaos"]
        assert chaos["enabled"] is False
        assert "CHAOS_ENABLED=false" in chaos["reason"]


def _scrape(text: str, name: str) -> dict[str, float]:
    return {
        sample.labels.get("client_type", ""): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


async def test_listeners_reports_streams_latency_and_lag_as_the_metrics_do(
    service: Service, http: httpx.AsyncClient
) -> None:
    url = f"ws://127.0.0.1:{service.ports['ws']}/ws"
    with trio.fail_after(20):
        async with open_websocket_url(url) as ws:
            await ws.get_message()  # welcome
            await ws.send_message(json.dumps({"type": "subscribe", "symbols": ["BTC", "ETH"]}))
            async with http.stream("GET", "/api/v1/stream/prices?assets=BTC") as sse:
                lines = sse.aiter_lines()
                await anext(lines)
                latency = service.context.metrics.publication_latency
                await wait_for(lambda: sum(latency.counts().get("ws", [0])) >= 5, within=10)
                await wait_for(lambda: service.context.metrics.loop_lag.samples >= 2)
                body = (await http.get("/api/v1/listeners")).json()
                scraped = (await http.get("/metrics")).text
    ws_view, sse_view = body["transports"]["ws"], body["transports"]["sse"]
    assert (ws_view["streams"], ws_view["subscriptions"]) == (1, 2)
    assert (sse_view["streams"], sse_view["subscriptions"]) == (1, 1)
    assert body["active_streams"] == 2
    assert _scrape(scraped, "market_data_streams") == {"ws": 1.0, "sse": 1.0}
    window = ws_view["latency"]["window"]
    assert window["count"] >= 5
    assert 0 < window["p50_ms"] <= window["p99_ms"] < 500
    assert body["window_seconds"] is None  # the first reading: the window is since start
    assert ws_view["latency"]["total"] == window
    assert body["event_loop_lag"]["last_ms"] >= 0
    assert body["event_loop_lag"]["max_ms"] >= body["event_loop_lag"]["last_ms"]
    assert "market_data_event_loop_lag_seconds" in scraped
    assert body["dependencies"]["history"] == {"backend": "memory", "status": "ok"}
    assert body["dependencies"]["market"]["status"] == "ok"


async def test_listeners_counts_drops_per_transport_and_reason_in_the_window(
    service: Service, http: httpx.AsyncClient
) -> None:
    streams = service.context.streams
    streams.record_drop("BTC/USD", "grpc", "conflated", 3)
    first = (await http.get("/api/v1/listeners")).json()["transports"]["grpc"]["dropped"]
    assert first == {"total": 3, "window": 3, "reasons": {"conflated": {"total": 3, "window": 3}}}
    streams.record_drop("ETH/USD", "grpc", "conflated", 2)
    streams.record_drop("ETH/USD", "grpc", "disconnected", 1)
    second = (await http.get("/api/v1/listeners")).json()["transports"]["grpc"]["dropped"]
    assert second["total"] == 6
    assert second["window"] == 3  # since the first reading, the only one kept so far
    assert second["reasons"]["disconnected"] == {"total": 1, "window": 1}


def test_listener_window_baseline_is_the_newest_reading_a_window_old() -> None:
    window = ListenerWindow(10.0)

    def reading(at: float) -> Reading:
        return Reading(at, {}, {})

    assert window.baseline(reading(0.0)) is None
    assert window.baseline(reading(0.5)).at == 0.0  # kept: not a second after the last
    for second in range(1, 12):
        window.baseline(reading(float(second)))
    assert window.baseline(reading(15.2)).at == 5.0


def test_quantile_interpolates_within_buckets_as_histogram_quantile() -> None:
    bounds = (0.001, 0.01, 0.1, float("inf"))
    assert quantile(bounds, [0, 0, 0, 0], 0.5) is None
    assert quantile(bounds, [10, 0, 0, 0], 0.5) == 0.0005
    assert quantile(bounds, [0, 10, 0, 0], 0.99) == pytest.approx(0.001 + 0.009 * 0.99)
    assert quantile(bounds, [50, 0, 0, 50], 0.99) == 0.1  # the +Inf bucket: its lower bound
    assert quantile(bounds, [1, 1, 1, 1], 0.25) == 0.001


def test_vendored_chart_library_is_the_pinned_version_with_its_licence() -> None:
    spec = importlib.util.spec_from_file_location(
        "vendor_lightweight_charts", ROOT / "scripts" / "vendor_lightweight_charts.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    build = (VENDOR / script.BUILD).read_text()
    assert script.banner(build)["version"] == script.VERSION
    assert (VENDOR / "NOTICE").read_text() == script.notice(build)
    assert "Apache License" in (VENDOR / "LICENSE").read_text()
    assert "https://www.tradingview.com/" in (VENDOR / "NOTICE").read_text()


def test_loop_lag_keeps_the_latest_sample_and_the_largest_of_its_window() -> None:
    lag = LoopLag(interval=0.25, window=1.0)  # a window of 4 samples
    for sample in (0.002, 0.050, 0.001, 0.003):
        lag.record(sample)
    assert (lag.last, lag.recent_max, lag.samples) == (0.003, 0.050, 4)
    lag.record(0.004)
    assert lag.recent_max == 0.050
    lag.record(0.004)  # the 50 ms sample leaves the window
    assert (lag.last, lag.recent_max) == (0.004, 0.004)
    lag.record(-0.001)  # a clock that woke early counts as no lag
    assert lag.last == 0.0


async def test_listeners_shows_postgresql_and_redis_status_when_configured(
    redis_server: RedisServer, postgres_database: str, postgres_schema: str
) -> None:
    env = {
        "REDIS_URL": redis_server.url,
        "POSTGRES_URL": postgres_database,
        "POSTGRES_SCHEMA": postgres_schema,
        "DISCOVERY_ENABLED": "false",
    }
    async with running_service(env) as service, _client(service) as http:
        await wait_for(lambda: service.context.postgres is not None and service.context.postgres.up)
        dependencies = (await http.get("/api/v1/listeners")).json()["dependencies"]
    assert dependencies["history"]["backend"] == "redis"
    assert dependencies["history"]["status"] == "ok"
    assert dependencies["postgres"]["status"] == "ok"
    assert dependencies["postgres"]["schema"] == postgres_schema

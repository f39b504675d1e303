"""The HTTP API against a real server on a loopback port, with httpx."""

from __future__ import annotations

import itertools
import re

import httpx
import pytest

from mdactors.app import Service
from tests.conftest import wait_for

RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


async def test_health_reports_identity_and_rfc3339_time(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "service", "instance", "version", "environment", "timestamp"}
    assert body["service"] == "market-data-simulator"
    assert body["status"] == "healthy"
    assert RFC3339_Z.match(body["timestamp"])


async def test_health_answers_head(http: httpx.AsyncClient) -> None:
    response = await http.head("/api/v1/health")
    assert response.status_code == 200
    assert response.content == b""


async def test_ready_reports_checks_while_serving(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v1/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["market"]["status"] == "ok"
    assert body["checks"]["history"]["backend"] == "memory"


async def test_current_price_accepts_every_spelling_and_echoes_it(
    http: httpx.AsyncClient,
) -> None:
    for spelling in ("BTC-USD", "btc-usd", "BTC", "BTC%2FUSD", "BTC/USD"):
        response = await http.get(f"/api/v1/prices/{spelling}/current")
        assert response.status_code == 200, spelling
        body = response.json()
        assert body["key"] == "BTC/USD"
        assert body["symbol"] == spelling.replace("%2F", "/")
        assert 1_000 < body["price"] < 1_000_000
        assert body["bid"] < body["ask"]
        assert body["source"] == "market-data-simulator"
        assert RFC3339_Z.match(body["timestamp"])


async def test_prices_move_between_calls(http: httpx.AsyncClient) -> None:
    first = (await http.get("/api/v1/prices/BTC-USD/current")).json()

    async def moved() -> bool:
        second = (await http.get("/api/v1/prices/BTC-USD/current")).json()
        return second["sequence"] > first["sequence"]

    for _ in range(100):
        if await moved():
            break
    else:
        pytest.fail("sequence did not advance")


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/api/v1/prices/NOPE-USD/current", 404, "unknown_symbol"),
        ("/api/v1/prices/B$C/current", 400, "invalid_symbol"),
        ("/api/v1/prices/A/B/C/current", 400, "invalid_symbol"),
        ("/api/v1/orderbook/NOPE", 404, "unknown_symbol"),
        ("/api/v1/stats/XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX/24h", 400, "invalid_symbol"),
        ("/api/v1/market/price/NOPE", 404, "unknown_symbol"),
        ("/api/v1/prices/BTC-USD/history?interval=7x", 400, "invalid_parameter"),
        ("/api/v1/prices/BTC-USD/history?limit=-1", 400, "invalid_parameter"),
        ("/api/v1/prices/BTC-USD/history?limit=abc", 400, "invalid_parameter"),
        ("/api/v1/prices/BTC-USD/history?limit=5001", 400, "invalid_parameter"),
        ("/api/v1/prices/BTC-USD/history?start=yesterday", 400, "invalid_parameter"),
        ("/api/v1/prices/BTC-USD/history?start=%C2%B2", 400, "invalid_parameter"),
        ("/api/v1/prices/BTC-USD/history?start=2000&end=1000", 400, "invalid_parameter"),
        ("/api/v1/orderbook/BTC-USD?depth=0", 400, "invalid_parameter"),
        ("/api/v1/orderbook/BTC-USD?depth=100000", 400, "invalid_parameter"),
        ("/api/v1/orderbook/BTC-USD?depth=ten", 400, "invalid_parameter"),
        ("/api/v1/market/history/BTC?interval=2m", 400, "invalid_parameter"),
        ("/api/v1/market/history/BTC?limit=999999999", 400, "invalid_parameter"),
        ("/api/v1/market/trades/BTC?limit=0", 400, "invalid_parameter"),
        ("/api/v1/correlations?window=3", 400, "invalid_parameter"),
        ("/api/v1/correlations?symbols=BTC,NOPE", 404, "unknown_symbol"),
        ("/api/v1/stream/prices?assets=NOPE", 404, "unknown_symbol"),
        ("/api/v1/nothing/here", 404, "not_found"),
    ],
)
async def test_bad_input_gets_a_json_error(
    http: httpx.AsyncClient, path: str, status: int, error: str
) -> None:
    response = await http.get(path)
    assert response.status_code == status
    body = response.json()
    assert body["error"] == error
    assert body["message"]
    if error == "invalid_parameter":
        assert body["parameter"]


async def test_wrong_method_is_405_json(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/v1/market/prices")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


async def test_405_names_the_allowed_methods_in_allow(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/v1/market/prices")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/json"
    allowed = {method.strip() for method in response.headers["allow"].split(",")}
    assert {"GET", "HEAD"} <= allowed and "POST" not in allowed
    response = await http.delete("/api/v1/health")
    assert response.status_code == 405
    assert {"GET", "HEAD"} <= {method.strip() for method in response.headers["allow"].split(",")}


async def test_history_returns_candles_ending_with_the_forming_one(
    http: httpx.AsyncClient,
) -> None:
    body = (await http.get("/api/v1/prices/ETH-USD/history?interval=1m&limit=30")).json()
    assert body["interval"] == "1m"
    data = body["data"]
    assert len(data) == 30
    starts = [row["timestamp_ms"] for row in data]
    assert starts == sorted(starts)
    assert all(b - a == 60_000 for a, b in itertools.pairwise(starts))
    assert all(row["closed"] for row in data[:-1])
    assert not data[-1]["closed"]
    for row in data:
        assert row["low"] <= min(row["open"], row["close"])
        assert row["high"] >= max(row["open"], row["close"])


async def test_history_ticks_are_recorded(service: Service, http: httpx.AsyncClient) -> None:
    start = service.context.market.latest("SOL/USD").seq
    await wait_for(lambda: service.context.market.latest("SOL/USD").seq >= start + 3)
    await wait_for(lambda: bool(service.context.recorder.trades["SOL/USD"]))
    body = (await http.get("/api/v1/prices/SOL/history?interval=tick&limit=2")).json()
    assert body["count"] == 2
    first, second = body["data"]
    assert first["sequence"] < second["sequence"]


async def test_orderbook_is_uncrossed_and_deeper_levels_are_larger(
    http: httpx.AsyncClient,
) -> None:
    book = (await http.get("/api/v1/orderbook/BTC-USD?depth=25")).json()
    bids, asks = book["bids"], book["asks"]
    assert len(bids) == len(asks) == 25
    assert bids[0][0] < asks[0][0]
    assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
    assert [p for p, _ in asks] == sorted(p for p, _ in asks)
    assert bids[-1][1] > bids[0][1]
    assert asks[-1][1] > asks[0][1]


async def test_stats_24h_are_consistent(http: httpx.AsyncClient) -> None:
    stats = (await http.get("/api/v1/stats/BTC-USD/24h")).json()
    assert stats["low"] <= stats["last"] <= stats["high"]
    assert stats["low"] <= stats["open"] <= stats["high"]
    assert stats["volume"] > 0
    assert stats["change"] == pytest.approx(stats["last"] - stats["open"])


async def test_correlations_form_a_symmetric_matrix(http: httpx.AsyncClient) -> None:
    body = (await http.get("/api/v1/correlations?symbols=BTC/USD,ETH-USD,SOL")).json()
    keys = body["symbols"]
    assert keys == ["BTC/USD", "ETH/USD", "SOL/USD"]
    matrix = body["matrix"]
    for a in keys:
        assert matrix[a][a] == 1.0
        for b in keys:
            assert matrix[a][b] == pytest.approx(matrix[b][a])
            assert -1.0 <= matrix[a][b] <= 1.0


async def test_market_ui_prices_shape(http: httpx.AsyncClient) -> None:
    body = (await http.get("/api/v1/market/prices")).json()
    assert {"BTC", "ETH", "SOL"} <= set(body)
    assert 10_000 < body["BTC"]["price"] < 200_000
    assert 500 < body["ETH"]["price"] < 20_000
    assert 20 < body["SOL"]["price"] < 2_000
    for quote in body.values():
        assert set(quote) == {"price", "timestamp", "change_24h", "change_percent_24h"}
        assert isinstance(quote["timestamp"], int)
    single = (await http.get("/api/v1/market/price/ETH")).json()
    assert set(single) == {"price", "timestamp", "change_24h", "change_percent_24h"}


async def test_market_ui_history_orderbook_and_trades_shapes(
    service: Service, http: httpx.AsyncClient
) -> None:
    history = (await http.get("/api/v1/market/history/BTC?interval=1h&limit=24")).json()
    assert len(history["data"]) == 24
    assert set(history["data"][0]) == {"timestamp", "open", "high", "low", "close", "volume"}
    book = (await http.get("/api/v1/market/orderbook/BTC?depth=10")).json()
    assert set(book) == {"bids", "asks", "timestamp"}
    assert len(book["bids"]) == 10
    await wait_for(lambda: len(service.context.recorder.trades["BTC/USD"]) >= 3)
    trades = (await http.get("/api/v1/market/trades/BTC?limit=3")).json()["trades"]
    assert len(trades) == 3
    assert set(trades[0]) == {"id", "price", "quantity", "side", "timestamp"}
    assert trades[0]["side"] in {"buy", "sell"}
    assert trades[0]["timestamp"] >= trades[1]["timestamp"]


async def test_cors_on_every_response_and_options_is_204(http: httpx.AsyncClient) -> None:
    for response in (
        await http.get("/api/v1/health"),
        await http.get("/api/v1/prices/NOPE-USD/current"),
        await http.get("/nope"),
    ):
        assert response.headers["access-control-allow-origin"] == "*"
    preflight = await http.options(
        "/api/v1/market/prices",
        headers={"Origin": "http://ui.local", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 204
    assert "GET" in preflight.headers["access-control-allow-methods"]


async def test_cors_matches_the_old_service_and_the_protocols_served(
    http: httpx.AsyncClient,
) -> None:
    preflight = await http.options(
        "/marketdata.MarketDataService/GetPrice",
        headers={"Origin": "http://ui.local", "Access-Control-Request-Method": "PUT"},
    )
    split = lambda name: {h.strip().lower() for h in preflight.headers[name].split(",")}  # noqa: E731
    assert {"get", "post", "put", "delete", "options"} <= split("access-control-allow-methods")
    allowed = split("access-control-allow-headers")
    assert {"x-client", "x-client-version", "connect-protocol-version", "authorization"} <= allowed
    assert "connect-protocol-version" in split("access-control-expose-headers")
    # gRPC-Web is served on this port: what its browser clients send and read.
    assert {"x-grpc-web", "x-user-agent", "grpc-timeout"} <= allowed
    assert {"grpc-status", "grpc-message"} <= split("access-control-expose-headers")


async def test_openapi_document_lists_the_rest_api(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    paths = document["paths"]
    assert "/api/v1/market/prices" in paths
    assert any(path.startswith("/api/v1/prices/") for path in paths)


async def test_trade_tape_is_full_from_the_first_request(http: httpx.AsyncClient) -> None:
    trades = (await http.get("/api/v1/market/trades/ETH?limit=500")).json()["trades"]
    assert len(trades) == 500
    ids = [int(trade["id"]) for trade in trades]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 500
    stamps = [trade["timestamp"] for trade in trades]
    assert stamps == sorted(stamps, reverse=True)

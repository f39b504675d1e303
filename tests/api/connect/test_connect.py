"""Connect protocol on the HTTP port (httpx), and its pure framing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from mdactors._proto import marketdata_pb2 as pb
from mdactors.api.connect.protocol import (
    Codec,
    end_stream,
    envelope,
    parse_codec,
    parse_timeout,
    split_envelopes,
)
from mdactors.api.rpc.service import Code, RpcError
from mdactors.app import Service
from tests.conftest import PATH, read_stream, running_service


@pytest.fixture
async def client(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://127.0.0.1:{service.ports['http']}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        yield client


# -- pure framing ------------------------------------------------------------


def test_envelopes_round_trip_and_truncation_is_an_error() -> None:
    body = envelope(b"abc") + envelope(b"", 0x02)
    assert split_envelopes(body) == [(0, b"abc"), (2, b"")]
    with pytest.raises(ValueError, match="truncated"):
        split_envelopes(envelope(b"abcdef")[:-1])
    flags, data = split_envelopes(end_stream(RpcError(Code.CANCELLED, "bye")))[0]
    assert flags == 0x02
    assert json.loads(data) == {"error": {"code": "canceled", "message": "bye"}}


def test_content_types_and_timeouts() -> None:
    assert parse_codec("application/json; charset=utf-8") == Codec("json", False)
    assert parse_codec("application/connect+proto") == Codec("proto", True)
    assert parse_codec("text/plain") is None
    assert parse_timeout("1500") == 1.5
    assert parse_timeout(None) is None
    for bad in ("-1", "1.5", "12345678901"):
        with pytest.raises(ValueError):
            parse_timeout(bad)


# -- unary -------------------------------------------------------------------


async def test_get_price_json_camel_case_out_and_both_spellings_in(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        f"{PATH}/GetPrice", json={"symbol": "eth-usd"}, headers={"Connect-Protocol-Version": "1"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["symbol"] == "eth-usd" and body["price"] > 0 and body["live"] is True
    assert body["source"] == "market-data-simulator" and body["timestamp"].endswith("Z")
    health = await client.post(f"{PATH}/HealthCheck", json={"service": ""})
    assert health.json()["details"]["service_name"] == "market-data-simulator"
    # camelCase and proto names are both accepted on input.
    for key in ("updateIntervalMs", "update_interval_ms"):
        frames, _ = await read_stream(
            client,
            envelope(json.dumps({"symbols": ["BTC"], key: 100}).encode()),
            "application/connect+json",
            1,
        )
        assert json.loads(frames[0][1])["symbol"] == "BTC"


async def test_get_price_binary(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{PATH}/GetPrice",
        content=pb.GetPriceRequest(symbol="SOL").SerializeToString(),
        headers={"Content-Type": "application/proto"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/proto"
    message = pb.GetPriceResponse.FromString(response.content)
    assert message.symbol == "SOL" and message.key == "SOL/USD" and message.price > 0


@pytest.mark.parametrize(
    ("path", "content", "content_type", "status", "code"),
    [
        ("GetPrice", b"{not json", "application/json", 400, "invalid_argument"),
        ("GetPrice", b"\x0a\xff\xff\xff\xff\x0f", "application/proto", 400, "invalid_argument"),
        ("GetPrice", b'{"symbol": "!!"}', "application/json", 400, "invalid_argument"),
        ("GetPrice", b'{"symbol": "BTC"}', "text/plain", 415, "unimplemented"),
        ("Nope", b"{}", "application/json", 404, "unimplemented"),
        ("GenerateSimulation", b"{}", "application/json", 400, "invalid_argument"),
        (
            "GetPrice",
            json.dumps({"symbol": "X" * 100_000}).encode(),
            "application/json",
            429,
            "resource_exhausted",
        ),
    ],
)
async def test_unary_errors_are_connect_error_json(
    client: httpx.AsyncClient,
    path: str,
    content: bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    response = await client.post(
        f"{PATH}/{path}", content=content, headers={"Content-Type": content_type}
    )
    assert response.status_code == status
    body = response.json()
    assert body["code"] == code and body["message"]
    assert response.headers["access-control-allow-origin"] == "*"


async def _chunked(size: int) -> AsyncIterator[bytes]:
    """``size`` bytes of JSON whitespace sent without a Content-Length (chunked)."""
    chunk = b" " * 65536
    for _ in range(size // len(chunk)):
        yield chunk


async def test_chunked_unary_request_over_the_body_cap_is_connect_resource_exhausted(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        f"{PATH}/GetPrice",
        content=_chunked(2 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "resource_exhausted" and "bytes" in body["message"]
    assert "error" not in body


async def test_unary_request_over_the_body_cap_is_connect_error_when_max_request_is_larger() -> (
    None
):
    async with running_service({"MAX_REQUEST_BYTES": str(4 * 1024 * 1024)}) as service:
        base = f"http://127.0.0.1:{service.ports['http']}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            response = await client.post(
                f"{PATH}/GetPrice",
                content=b" " * (2 * 1024 * 1024),
                headers={"Content-Type": "application/json"},
            )
    assert response.status_code == 429
    body = response.json()
    assert body == {
        "code": "resource_exhausted",
        "message": f"request larger than {1024 * 1024} bytes",
    }


# -- streaming ---------------------------------------------------------------


async def test_stream_prices_json_envelopes(client: httpx.AsyncClient, service: Service) -> None:
    request = envelope(json.dumps({"symbols": ["btc-usd", "ETH/USD"]}).encode())
    frames, response = await read_stream(client, request, "application/connect+json", 6)
    assert response.headers["content-type"] == "application/connect+json"
    updates = [json.loads(data) for flags, data in frames]
    assert all(flags == 0 for flags, _ in frames)
    assert {update["symbol"] for update in updates} == {"btc-usd", "ETH/USD"}
    assert all(update["source"] == "market-data-simulator" for update in updates)
    assert all(int(update["sequence"]) >= 1 and "changeInfo" in update for update in updates)


async def test_stream_prices_binary_envelopes_match_grpc_encoding(
    client: httpx.AsyncClient,
) -> None:
    request = envelope(pb.StreamPricesRequest(symbols=["BTC/USD"]).SerializeToString())
    frames, response = await read_stream(client, request, "application/connect+proto", 4)
    assert response.headers["content-type"] == "application/connect+proto"
    updates = [pb.PriceUpdate.FromString(data) for _, data in frames]
    sequences = [update.sequence for update in updates]
    assert sequences == list(range(sequences[0], sequences[0] + 4))
    assert all(update.symbol == "BTC/USD" and update.bid < update.ask for update in updates)


async def test_stream_timeout_ends_with_deadline_exceeded(client: httpx.AsyncClient) -> None:
    request = envelope(json.dumps({"symbols": ["BTC"]}).encode())
    frames, _ = await read_stream(
        client, request, "application/connect+json", 1000, **{"Connect-Timeout-Ms": "200"}
    )
    flags, data = frames[-1]
    assert flags == 0x02
    assert json.loads(data)["error"]["code"] == "deadline_exceeded"
    assert len(frames) > 1


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (envelope(b'{"symbols": []}'), "at least one"),
        (envelope(b'{"symbols": ["NOPE/USD"]}'), "NOPE/USD"),
        (envelope(b'{"symbols": ["BTC"], "updateIntervalMs": -5}'), "update_interval_ms"),
        (envelope(b"{oops"), "malformed"),
        (envelope(b"{}")[:-1], "truncated"),
    ],
)
async def test_bad_stream_requests_end_with_an_error_envelope(
    client: httpx.AsyncClient, body: bytes, needle: str
) -> None:
    frames, response = await read_stream(client, body, "application/connect+json", 5)
    assert response.status_code == 200
    assert len(frames) == 1 and frames[0][0] == 0x02
    error = json.loads(frames[0][1])["error"]
    assert error["code"] == "invalid_argument" and needle in error["message"]


async def test_chunked_stream_request_over_the_body_cap_ends_with_resource_exhausted(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        f"{PATH}/StreamPrices",
        content=_chunked(2 * 1024 * 1024),
        headers={"Content-Type": "application/connect+json"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/connect+json"
    frames = split_envelopes(response.content)
    assert len(frames) == 1 and frames[0][0] == 0x02
    assert json.loads(frames[0][1])["error"]["code"] == "resource_exhausted"

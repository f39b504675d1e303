"""Our own API shows a perpetual's contract: REST, the WebSocket ``funding`` channel, gRPC."""

from __future__ import annotations

import itertools

import httpx
import trio

from mdactors._proto import marketdata_pb2 as pb
from mdactors._proto import marketdata_pb2_grpc as pb_grpc
from tests.conftest import call, connect, grpc_service

PERPETUAL_FIELDS = {
    "mark_price", "index_price", "premium_index", "funding_rate", "interest_rate",
    "next_funding_time", "open_interest", "open_interest_value", "timestamp",
}  # fmt: skip


def _check_contract(contract: dict, price: float) -> None:
    assert set(contract) == PERPETUAL_FIELDS
    assert abs(contract["mark_price"] / price - 1.0) < 0.005
    assert abs(contract["index_price"] / price - 1.0) < 0.005
    assert abs(contract["funding_rate"]) <= 0.0075 and contract["interest_rate"] == 0.0001
    assert contract["open_interest"] > 0
    assert contract["next_funding_time"][11:] in {
        "00:00:00.000000Z", "08:00:00.000000Z", "16:00:00.000000Z",
    }  # fmt: skip


async def test_rest_current_stats_and_funding_show_the_contract() -> None:
    async with grpc_service() as (service, _):
        base = f"http://127.0.0.1:{service.ports['http']}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            current = (await http.get("/api/v1/prices/BTC-USD-PERP/current")).json()
            stats = (await http.get("/api/v1/stats/BTC-USD-PERP/24h")).json()
            spot = (await http.get("/api/v1/prices/BTC-USD/current")).json()
            funding = await http.get("/api/v1/funding/BTC-USD-PERP", params={"limit": 5})
            not_perp = await http.get("/api/v1/funding/BTC-USD")
            bad_limit = await http.get("/api/v1/funding/BTC-USD-PERP", params={"limit": 0})
    _check_contract(current["perpetual"], current["price"])
    _check_contract(stats["perpetual"], stats["last"])
    assert "perpetual" not in spot
    assert funding.status_code == 200
    body = funding.json()
    assert body["key"] == "BTC/USD-PERP" and body["settled"] == [] and body["count"] == 0
    _check_contract(body["current"], current["price"])
    assert not_perp.status_code == 400 and not_perp.json()["parameter"] == "symbol"
    assert bad_limit.status_code in (400, 422)


async def test_websocket_funding_channel_updates_every_tick() -> None:
    async with grpc_service() as (service, _), connect(service) as client:
        refused = await client.request(
            {"type": "subscribe", "symbols": ["BTC-USD"], "channels": ["funding"]}, "error"
        )
        assert refused["code"] == "bad_channel" and "not a perpetual" in refused["message"]
        await client.send(
            {"type": "subscribe", "symbols": ["BTC-USD-PERP"], "channels": ["funding"]}
        )
        await client.next_of("subscribed")
        seen = []
        with trio.fail_after(10):
            while len(seen) < 5:
                message = await client.next()
                if message["type"] in ("snapshot", "update") and message["channel"] == "funding":
                    seen.append(message)
    assert seen[0]["type"] == "snapshot" and {m["type"] for m in seen[1:]} == {"update"}
    assert all(b["seq"] == a["seq"] + 1 for a, b in itertools.pairwise(seen))
    latest = service.context.market.latest("BTC/USD-PERP")
    _check_contract(seen[-1]["data"], latest.price)


async def test_grpc_price_updates_of_a_perpetual_carry_its_contract() -> None:
    async with grpc_service() as (_, channel):
        md = pb_grpc.MarketDataServiceStub(channel)

        def read() -> list[pb.PriceUpdate]:
            stream = md.StreamPrices(pb.StreamPricesRequest(symbols=["BTC-USD-PERP", "BTC-USD"]))
            updates = []
            for update in stream:
                updates.append(update)
                if len(updates) >= 6:
                    stream.cancel()
                    break
            return updates

        updates = await call(read)
    perps = [u for u in updates if u.key == "BTC/USD-PERP"]
    spots = [u for u in updates if u.key == "BTC/USD"]
    assert perps and spots
    assert all(u.HasField("perpetual") for u in perps)
    assert not any(u.HasField("perpetual") for u in spots)
    info = perps[-1].perpetual
    assert abs(info.mark_price / perps[-1].price - 1.0) < 0.005
    assert info.open_interest > 0 and info.interest_rate == 0.0001
    assert info.next_funding_time.seconds % (8 * 3600) == 0

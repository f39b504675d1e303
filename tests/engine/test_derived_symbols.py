"""Perpetuals priced on their spot and crosses priced from their legs, everywhere a symbol is."""

from __future__ import annotations

import math

import grpc
import httpx
import pytest
import trio
import trio.testing

from mdactors._proto import marketdata_pb2 as pb
from mdactors._proto import marketdata_pb2_grpc as pb_grpc
from mdactors.domain.symbols import SymbolError, normalize_symbol, spec_for, spot_of
from mdactors.engine.market import Market, UnknownSymbol
from mdactors.settings import ConfigError, load_settings
from tests.conftest import running_service

KEYS = ["BTC/USD", "ETH/USD", "BTC/ETH", "BTC/USD-PERP"]


@pytest.mark.parametrize(
    ("raw", "key"),
    [("BTC-USD-PERP", "BTC/USD-PERP"), ("btc/usd-perp", "BTC/USD-PERP"),
     ("BTC-PERP", "BTC/USD-PERP"), ("eth_usd_swap", "ETH/USD-PERP"), ("BTC-ETH", "BTC/ETH")],
)  # fmt: skip
def test_ecosystem_spellings_of_perpetuals_and_crosses(raw: str, key: str) -> None:
    assert normalize_symbol(raw) == key


def test_a_perpetual_has_its_spots_grid_and_more_volume() -> None:
    perp, spot = spec_for("BTC/USD-PERP"), spec_for("BTC/USD")
    assert spot_of(perp.key) == "BTC/USD" and perp.perpetual and not spot.perpetual
    assert (perp.base, perp.quote) == ("BTC", "USD")
    assert perp.price_decimals == spot.price_decimals
    assert perp.daily_volume > spot.daily_volume


@pytest.mark.parametrize("raw", ["BTC-USD-ETH-PERP", "PERP-", "-PERP", "BTC--PERP"])
def test_malformed_perpetuals_are_refused(raw: str) -> None:
    with pytest.raises(SymbolError):
        normalize_symbol(raw)


def test_a_perpetual_without_its_spot_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"DEFAULT_SYMBOLS": "ETH/USD,BTC-USD-PERP"}, dotenv=None)
    assert caught.value.variable == "DEFAULT_SYMBOLS"
    assert "BTC/USD" in str(caught.value)
    with pytest.raises(UnknownSymbol):
        Market(["BTC/USD-PERP"], 1.0, seed=1)


async def _run(market: Market, seconds: float) -> list[dict[str, tuple[int, float]]]:
    """Every symbol's (seq, price) after each second of ``market`` running (half-way
    between ticks, so no tick is being made as it is read)."""
    samples = []
    async with trio.open_nursery() as nursery:
        await nursery.start(market.run)
        await trio.sleep(0.5)
        for _ in range(int(seconds)):
            await trio.sleep(1.0)
            samples.append({k: (market.latest(k).seq, market.latest(k).price) for k in KEYS})
        nursery.cancel_scope.cancel()
    return samples


async def test_derived_symbols_follow_their_legs_every_tick(
    autojump_clock: trio.testing.MockClock,
) -> None:
    market = Market(KEYS, 1.0, seed=7)
    samples = await _run(market, 600)
    basis = []
    for sample in samples:
        (spot_seq, spot), (eth_seq, eth) = sample["BTC/USD"], sample["ETH/USD"]
        cross_seq, cross = sample["BTC/ETH"]
        perp_seq, perp = sample["BTC/USD-PERP"]
        assert cross_seq == spot_seq == eth_seq == perp_seq, "one tick each per step"
        assert cross == pytest.approx(spot / eth, rel=2e-4)  # the cross's tick grid: 1e-5
        basis.append((perp / spot - 1) * 10_000)
    assert all(abs(b) < 20 for b in basis), "the basis stays within a few bp"
    assert max(basis) - min(basis) > 1, "and it moves"
    assert abs(sum(basis) / len(basis) - 1.0) < 2.0, "around its +1 bp mean"


async def test_a_seeded_market_prices_derived_symbols_identically(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first = await _run(Market(KEYS, 1.0, seed=11), 120)
    second = await _run(Market(KEYS, 1.0, seed=11), 120)
    assert first == second


async def test_get_price_answers_for_perpetuals_and_crosses() -> None:
    async with running_service() as service:
        channel = grpc.insecure_channel(f"127.0.0.1:{service.ports['grpc']}")
        stub = pb_grpc.MarketDataServiceStub(channel)

        def get(symbol: str) -> pb.GetPriceResponse:
            return stub.GetPrice(pb.GetPriceRequest(symbol=symbol), timeout=5)

        try:
            perp, eth_perp, sol_eth, unknown, eth, sol = await trio.to_thread.run_sync(
                lambda: [
                    get(s)
                    for s in (
                        "BTC-USD-PERP",
                        "ETH-USD-PERP",
                        "SOL-ETH",
                        "ZZZ-USD-PERP",
                        "ETH-USD",
                        "SOL-USD",
                    )
                ]
            )
        finally:
            channel.close()
    assert (perp.symbol, perp.key, perp.live) == ("BTC-USD-PERP", "BTC/USD-PERP", True)
    # Not simulated, but made of live symbols: priced from them.
    assert not eth_perp.live and eth_perp.price == pytest.approx(eth.price, rel=1e-3)
    assert not sol_eth.live and sol_eth.price == pytest.approx(sol.price / eth.price, rel=1e-3)
    assert not unknown.live and unknown.price > 0 and math.isfinite(unknown.price)


async def test_rest_serves_simulated_derived_symbols_and_refuses_others() -> None:
    async with running_service() as service:
        base = f"http://127.0.0.1:{service.ports['http']}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            perp = await http.get("/api/v1/prices/BTC-USD-PERP/current")
            cross = await http.get("/api/v1/prices/btc-eth/current")
            unknown_spot = await http.get("/api/v1/prices/ETH-USD-PERP/current")
            unknown_legs = await http.get("/api/v1/prices/ZZZ-ETH/current")
            malformed = await http.get("/api/v1/prices/BTC-USD-ETH-PERP/current")
    assert perp.status_code == 200 and perp.json()["key"] == "BTC/USD-PERP"
    assert cross.status_code == 200 and cross.json()["key"] == "BTC/ETH"
    assert unknown_spot.status_code == 404 and unknown_spot.json()["error"] == "unknown_symbol"
    assert unknown_legs.status_code == 404
    assert malformed.status_code == 400 and malformed.json()["error"] == "invalid_symbol"

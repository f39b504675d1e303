"""Chaos for perpetuals: a funding spike, a basis blowout and a liquidation cascade, measured."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import trio
import trio.testing

from mdactors.api.admin.chaos_orders import ORDERS, Limits, start_order
from mdactors.domain.funding import FundingRules, funding_rate, premium_for_funding
from mdactors.engine.derived_actor import PerpetualActor
from mdactors.engine.market import Market
from mdactors.engine.scenarios import ScenarioEngine
from tests.conftest import running_service

EPOCH_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z, a funding time
SPOT, PERP = "BTC/USD", "BTC/USD-PERP"
RULES = FundingRules()


@pytest.mark.parametrize("rate", [0.003, -0.002, 0.0001, 0.0008])
def test_the_premium_for_a_funding_rate_gives_that_rate(rate: float) -> None:
    assert funding_rate(premium_for_funding(rate, RULES), RULES) == pytest.approx(rate)


async def _play(
    body: tuple[str, str], seconds: float, interval: float, seed: int = 3
) -> tuple[list[dict[str, float]], PerpetualActor]:
    """Run BTC and its perpetual from a funding time, start ``body`` at once, sample each tick."""
    origin = trio.current_time()
    wall = lambda: EPOCH_NS + int((trio.current_time() - origin) * 1e9)  # noqa: E731
    market = Market([SPOT, PERP], interval, seed=seed, wall_clock=wall)
    perp = market.actor(PERP)
    assert isinstance(perp, PerpetualActor)
    engine = ScenarioEngine(market)
    samples = []
    async with trio.open_nursery() as nursery:
        await nursery.start(market.run)
        await trio.sleep(interval / 2)
        path, text = body
        model, make = ORDERS[path]
        order = make(
            model.model_validate_json(text), lambda _, raw: market.resolve(raw), Limits(0.5, 1e6)
        )
        start_order(order, engine)
        began = trio.current_time()
        while trio.current_time() < began + seconds:
            tick = market.latest(PERP)
            samples.append(
                {
                    "t": trio.current_time() - began,
                    "spot": market.latest(SPOT).price,
                    "perp": tick.price,
                    "spread": (tick.ask - tick.bid) / tick.price,
                    "rate": perp.funding.estimated_rate,
                    "oi": perp.positions.oi,
                    "forced": len(perp.positions.forced),
                }
            )
            await trio.sleep(interval)
        nursery.cancel_scope.cancel()
    return samples, perp


async def test_funding_spike_settles_at_its_target(autojump_clock: trio.testing.MockClock) -> None:
    body = (
        '{"symbol":"BTC-USD-PERP","target_funding_rate":0.003,"onset":"sudden","duration_hours":9}'
    )
    samples, perp = await _play(("funding-spike", body), 8 * 3600 + 120, 10.0)
    (settled, *_) = perp.funding.history
    assert settled.time_ms == EPOCH_NS // 10**6 + 8 * 3600 * 1000
    assert settled.rate == pytest.approx(0.003, abs=2e-4)
    # The basis follows: the perpetual trades ~35 bp over its spot.
    basis = np.median([s["perp"] / s["spot"] - 1.0 for s in samples])
    assert 0.0030 < basis < 0.0040
    assert samples[len(samples) // 2]["rate"] == pytest.approx(0.003, abs=2e-4)


async def test_basis_blowout_reaches_its_bp_and_comes_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    body = '{"symbol":"BTC-USD-PERP","basis_bps":250,"duration_seconds":1800,"onset_seconds":600,"recovery_time_seconds":600}'  # noqa: E501
    samples, _ = await _play(("basis-blowout", body), 3000, 5.0)

    def basis_bp(lo: float, hi: float) -> float:
        return float(
            np.median([(s["perp"] / s["spot"] - 1.0) * 1e4 for s in samples if lo < s["t"] < hi])
        )

    assert basis_bp(0, 20) == pytest.approx(1, abs=8), "starts at the usual basis"
    assert basis_bp(700, 1700) == pytest.approx(251, abs=8)
    assert basis_bp(2500, 3000) == pytest.approx(1, abs=8), "and comes back"


async def test_liquidation_cascade_drops_forces_orders_cuts_open_interest_widens_spread(
    autojump_clock: trio.testing.MockClock,
) -> None:
    body = (
        '{"symbol":"BTC-USD-PERP","drop_percentage":-12,"duration_seconds":600,"onset_seconds":180}'
    )
    samples, perp = await _play(("liquidation-cascade", body), 900, 1.0)
    before, during = samples[0], [s for s in samples if 200 < s["t"] < 590]
    assert min(s["perp"] for s in during) / before["perp"] == pytest.approx(0.88, abs=0.02)
    # The fall liquidates longs; the fast recovery after it, shorts.
    falling = [o for o in perp.positions.forced if o.time_ms - EPOCH_NS // 10**6 < 590_000]
    assert len(falling) >= 10 and {order.side for order in falling} == {"SELL"}
    assert min(s["oi"] for s in samples) < 0.8 * before["oi"], "open interest collapses"
    assert np.median([s["spread"] for s in during]) > 3.0 * before["spread"]


async def test_perpetual_chaos_refuses_a_spot_and_a_rate_beyond_the_cap() -> None:
    async with running_service() as service:
        base = f"http://127.0.0.1:{service.ports['http']}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            spot = await client.post(
                "/chaos/funding-spike", json={"symbol": "BTC-USD", "target_funding_rate": 0.003}
            )
            capped = await client.post(
                "/chaos/funding-spike", json={"symbol": "BTC-USD-PERP", "target_funding_rate": 0.01}
            )
            started = await client.post(
                "/chaos/liquidation-cascade", json={"symbol": "BTC-USD-PERP"}
            )
            active = (await client.get("/chaos/active-scenarios")).json()
    assert spot.status_code == 422 and spot.json()["field"] == "symbol"
    assert "not a perpetual" in spot.json()["message"]
    assert capped.status_code == 422 and capped.json()["field"] == "target_funding_rate"
    assert started.status_code == 201, started.text
    assert started.json()["scenario_type"] == "liquidation_cascade"
    assert started.json()["symbols"] == ["BTC/USD", "BTC/USD-PERP"]
    assert [s["scenario_type"] for s in active["scenarios"]] == ["liquidation_cascade"]

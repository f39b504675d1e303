"""A perpetual's market: premium, funding, mark, open interest and liquidations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trio
import trio.testing

from mdactors.domain.funding import (
    FundingRules,
    FundingState,
    funding_rate,
    median3,
    premium_index,
)
from mdactors.domain.positioning import OpenInterest
from mdactors.domain.scenarios import ScenarioKind, VolatilitySpike
from mdactors.engine.derived_actor import PerpetualActor
from mdactors.engine.market import Market
from mdactors.engine.scenarios import ScenarioEngine

EPOCH_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z, a funding time
HOUR_NS = 3_600 * 10**9
RULES = FundingRules()


def test_premium_index_is_zero_inside_the_spread_and_signed_outside() -> None:
    assert premium_index(100.0, 99.9, 100.1) == 0.0
    assert premium_index(100.0, 100.2, 100.3) == pytest.approx(0.002)
    assert premium_index(100.0, 99.6, 99.7) == pytest.approx(-0.003)


@pytest.mark.parametrize(
    ("premium", "rate"),
    [(0.0, 0.0001), (0.0004, 0.0001), (0.001, 0.0005), (-0.0006, -0.0001), (0.02, 0.0075)],
)
def test_funding_rate_is_premium_plus_clamped_interest_then_capped(
    premium: float, rate: float
) -> None:
    assert funding_rate(premium, RULES) == pytest.approx(rate)


def test_median3() -> None:
    assert [median3(*v) for v in ((1, 2, 3), (3, 1, 2), (2, 3, 1), (5, 5, 1))] == [2, 2, 2, 5]


def _feed(state: FundingState, start_ns: int, seconds: int, premium: float) -> None:
    index = 50_000.0
    bid = index * (1.0 + premium) if premium > 0 else index * (1.0 + premium) - 1.0
    ask = bid + 1.0 if premium > 0 else index * (1.0 + premium)
    for second in range(seconds):
        state.observe(start_ns + second * 10**9, index, bid, ask, (bid + ask) / 2.0)


def test_funding_settles_on_the_8_hour_grid_with_the_weighted_premium_average() -> None:
    state = FundingState(RULES, EPOCH_NS)
    # First half of the interval at +0.10 %, second half at +0.30 %.
    _feed(state, EPOCH_NS, 4 * 3_600, 0.001)
    _feed(state, EPOCH_NS + 4 * HOUR_NS, 4 * 3_600, 0.003)
    assert not state.history, "nothing settles before 08:00"
    samples = 8 * 3_600 // RULES.sample_s
    premiums = np.where(np.arange(samples) < samples // 2, 0.001, 0.003)
    weights = np.arange(1, samples + 1)
    average = float(np.sum(weights * premiums) / np.sum(weights))
    assert state.estimated_rate == pytest.approx(funding_rate(average, RULES), rel=1e-6)
    state.observe(EPOCH_NS + 8 * HOUR_NS, 50_000.0, 49_999.0, 50_001.0, 50_000.0)
    (settled,) = state.history
    assert settled.time_ms == (EPOCH_NS + 8 * HOUR_NS) // 10**6
    # The later samples weigh more: closer to 0.30 % than the plain mean 0.20 % would be.
    assert settled.rate == pytest.approx(funding_rate(average, RULES), rel=1e-6)
    assert settled.rate > funding_rate(0.002, RULES) + 4e-4
    assert state.next_funding_ms == (EPOCH_NS + 16 * HOUR_NS) // 10**6
    assert state.estimated_rate == pytest.approx(RULES.interest_rate), "a new interval"


def test_mark_is_the_median_of_funding_price_basis_price_and_last() -> None:
    state = FundingState(RULES, EPOCH_NS)
    for second in range(40):
        mark = state.observe(EPOCH_NS + second * 10**9, 100.0, 100.05, 100.15, 100.1)
    # price 1 ≈ 100 × (1 + small rate), price 2 = 100 + 0.1 (the basis average), last 100.1
    assert mark == pytest.approx(100.1)
    mark = state.observe(EPOCH_NS + 41 * 10**9, 100.0, 100.05, 100.15, 103.0)
    assert mark == pytest.approx(100.1), "a last price spike does not move the mark"


def test_liquidations_follow_a_fast_fall_and_cut_open_interest() -> None:
    positions = OpenInterest(1_000.0, 100.0, 0.001, np.random.default_rng(3))
    for second in range(120):
        positions.step(EPOCH_NS + second * 10**9, 1.0, 100.0, 100.0, 0.0001)
    calm = positions.oi
    assert not positions.forced
    for second in range(120, 150):
        mark = 100.0 * math.exp(-0.002 * (second - 119))  # −6 % in 30 s
        positions.step(EPOCH_NS + second * 10**9, 1.0, mark, mark, 0.0001)
    assert positions.forced and {order.side for order in positions.forced} == {"SELL"}
    liquidated = sum(order.qty for order in positions.forced)
    assert positions.oi < calm - 0.5 * liquidated
    assert [o.id for o in positions.forced] == list(range(1, len(positions.forced) + 1))


def _wall(start_ns: int):
    """Exchange time that starts at ``start_ns`` now and runs with trio's (mock) clock."""
    origin = trio.current_time()
    return lambda: start_ns + int((trio.current_time() - origin) * 1e9)


async def _run_perp(seconds: int, seed: int = 11) -> tuple[list[tuple[float, ...]], PerpetualActor]:
    market = Market(["BTC/USD", "BTC/USD-PERP"], 1.0, seed=seed, wall_clock=_wall(EPOCH_NS))
    perp = market.actor("BTC/USD-PERP")
    assert isinstance(perp, PerpetualActor)
    rows = []
    async with trio.open_nursery() as nursery:
        await nursery.start(market.run)
        await trio.sleep(0.5)
        for _ in range(seconds):
            await trio.sleep(1.0)
            funding = perp.funding
            rows.append(
                (funding.index, market.latest("BTC/USD-PERP").price, funding.mark,
                 funding.estimated_rate, perp.positions.oi)
            )  # fmt: skip
        nursery.cancel_scope.cancel()
    return rows, perp


async def test_seeded_perpetual_market_is_reproducible_and_within_its_bounds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rows, perp = await _run_perp(3 * 3_600)
    again, _ = await _run_perp(3 * 3_600)
    assert rows == again
    index, last, mark, rate, oi = (np.array(column) for column in zip(*rows, strict=True))
    basis = last / index - 1.0
    premium = mark / index - 1.0
    # The mark lies within the basis's range around the index (plus the funding term).
    assert np.all(premium <= basis.max() + 1e-4) and np.all(premium >= basis.min() - 1e-4)
    assert np.all(np.abs(rate) <= RULES.cap)
    assert np.all(oi > 0)
    # One-minute returns of the perpetual follow the spot's.
    r_spot, r_perp = (np.diff(np.log(series[::60])) for series in (index, last))
    assert np.corrcoef(r_spot, r_perp)[0, 1] > 0.9
    assert perp.funding.next_funding_ms == (EPOCH_NS + 8 * HOUR_NS) // 10**6


async def test_funding_settles_at_each_8_hour_mark_of_a_running_market(
    autojump_clock: trio.testing.MockClock,
) -> None:
    market = Market(["BTC/USD", "BTC/USD-PERP"], 10.0, seed=5, wall_clock=_wall(EPOCH_NS))
    perp = market.actor("BTC/USD-PERP")
    assert isinstance(perp, PerpetualActor)
    async with trio.open_nursery() as nursery:
        await nursery.start(market.run)
        await trio.sleep(16 * 3_600 + 60)
        nursery.cancel_scope.cancel()
    times = [settled.time_ms for settled in perp.funding.history]
    assert times == [(EPOCH_NS + h * HOUR_NS) // 10**6 for h in (8, 16)]
    for settled in perp.funding.history:
        # A basis of a few bp keeps the premium inside the clamp: the rate is the interest rate.
        assert settled.rate == pytest.approx(RULES.interest_rate, abs=2e-4)


CALM, SPIKE = 30 * 360, 8 * 360  # steps of 10 s: 30 h calm, then 8 h of a volatility spike


async def test_the_basis_follows_momentum_and_widens_in_volatility(
    autojump_clock: trio.testing.MockClock,
) -> None:
    market = Market(["BTC/USD", "BTC/USD-PERP"], 10.0, seed=21, wall_clock=_wall(EPOCH_NS))
    perp = market.actor("BTC/USD-PERP")
    assert isinstance(perp, PerpetualActor) and perp.basis is not None
    engine = ScenarioEngine(market)
    rows = []
    async with trio.open_nursery() as nursery:
        await nursery.start(market.run)
        await trio.sleep(5.0)
        for step in range(CALM + SPIKE):
            if step == CALM:  # then BTC's volatility × 5
                engine.start(
                    ScenarioKind.VOLATILITY_SPIKE, VolatilitySpike(5.0), ["BTC/USD"],
                    duration=86_400.0, recovery=0.0, onset=0.0,
                )  # fmt: skip
            rows.append((perp.basis.bps, perp.basis.momentum))
            await trio.sleep(10.0)
        nursery.cancel_scope.cancel()
    basis, momentum = (np.array(column) for column in zip(*rows, strict=True))
    calm = slice(360, CALM)
    assert np.corrcoef(basis[calm], momentum[calm])[0, 1] > 0.3
    spiked = slice(CALM + 360, None)
    assert np.std(basis[spiked]) > 2.5 * np.std(basis[calm])

"""The scenario engine on live actors, feed disruptions and the price breaker (autojump clock)."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import trio
import trio.testing

from mdactors.domain.candles import CandleSeries
from mdactors.domain.guards import FeedEdge, PriceBreaker
from mdactors.domain.overlay import Scenario
from mdactors.domain.scenarios import (
    Crash,
    Disruption,
    FeedMode,
    PriceMove,
    ScenarioKind,
    Timeline,
    VolatilitySpike,
)
from mdactors.domain.tick import Tick
from mdactors.engine.market import Market
from mdactors.engine.scenarios import ScenarioEngine, TooManyScenarios, UnknownScenario

BASE_NS = 1_700_000_000 * 1_000_000_000
SYMBOLS = ["BTC/USD", "ETH/USD", "USDT/USD"]
INTERVAL = 0.05


def _wall() -> int:
    return BASE_NS + int(trio.current_time() * 1e9)


def _market() -> Market:
    return Market(SYMBOLS, INTERVAL, seed=3, wall_clock=_wall)


async def _steps(market: Market, count: int) -> dict[str, list[Tick]]:
    """Step every actor ``count`` times, one interval apart, without publishing."""
    ticks: dict[str, list[Tick]] = {key: [] for key in market.symbols}
    for _ in range(count):
        await trio.sleep(INTERVAL)
        for key, actor in market.actors.items():
            ticks[key].append(actor.step())
    return ticks


def _tick(seq: int, price: float, ts_ns: int = BASE_NS) -> Tick:
    return Tick(
        "BTC/USD", seq, price, price - 1, price + 1, 1.0, ts_ns, 0.0, 0.0, price, price, 1.0
    )


async def test_price_shock_moves_the_actor_and_ends_by_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    market = _market()
    engine = ScenarioEngine(market)
    before = market.actor("BTC/USD").latest.price
    scenario = engine.start(
        ScenarioKind.PRICE_SHOCK, PriceMove(-0.15), ["BTC/USD"], duration=1.0, recovery=1.0
    )
    assert [s.id for s in engine.active()] == [scenario.id]
    ticks = await _steps(market, 60)
    prices = [t.price for t in ticks["BTC/USD"]]
    assert prices[5] < before * 0.87
    assert prices[-1] == pytest.approx(before, rel=0.01)
    assert market.actor("BTC/USD").overlay is None
    assert engine.active() == [] and list(engine.finished) == [scenario]
    assert ticks["ETH/USD"][5].price > market.actor("ETH/USD").latest.price * 0.0  # untouched
    assert engine.counts() == {}


async def test_stop_recovers_smoothly_and_unknown_ids_are_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    market = _market()
    engine = ScenarioEngine(market)
    scenario = engine.start(
        ScenarioKind.RALLY, PriceMove(0.10), ["ETH/USD"], duration=600.0, recovery=1.0, onset=2.0
    )
    ticks = await _steps(market, 40)
    assert engine.counts() == {("rally", "ETH/USD"): 1}
    engine.stop(scenario.id)
    ticks_after = await _steps(market, 30)
    path = [t.price for t in ticks["ETH/USD"] + ticks_after["ETH/USD"]]
    jumps = [abs(math.log(b / a)) for a, b in itertools.pairwise(path)]
    assert max(jumps) < 0.01  # 10 % spread over ≥ 1 s of 50 ms ticks
    assert engine.active() == []
    with pytest.raises(UnknownScenario):
        engine.stop(scenario.id)


async def test_active_scenarios_are_limited(autojump_clock: trio.testing.MockClock) -> None:
    engine = ScenarioEngine(_market(), max_active=2)
    for _ in range(2):
        engine.start(ScenarioKind.VOLATILITY_SPIKE, VolatilitySpike(2.0), ["BTC/USD"],
                     duration=10.0, recovery=0.0)  # fmt: skip
    with pytest.raises(TooManyScenarios):
        engine.start(ScenarioKind.VOLATILITY_SPIKE, VolatilitySpike(2.0), ["BTC/USD"],
                     duration=10.0, recovery=0.0)  # fmt: skip


async def test_max_intensity_crash_and_volatility_spike_keep_every_invariant(
    autojump_clock: trio.testing.MockClock,
) -> None:
    market = _market()
    engine = ScenarioEngine(market)
    engine.start(ScenarioKind.MARKET_CRASH, Crash(-0.99, 20.0, 0.99, 100.0), SYMBOLS,
                 duration=60.0, recovery=20.0, shared=True)  # fmt: skip
    engine.start(ScenarioKind.VOLATILITY_SPIKE, VolatilitySpike(20.0), SYMBOLS,
                 duration=60.0, recovery=20.0)  # fmt: skip
    engine.start(ScenarioKind.PRICE_SHOCK, PriceMove(-0.99), SYMBOLS, duration=60.0, recovery=20.0)
    ticks = await _steps(market, 2_000)
    for key, series in ticks.items():
        candles = CandleSeries(key, "1m")
        for tick in series:
            assert math.isfinite(tick.price) and tick.price > 0, (key, tick)
            assert 0 < tick.bid < tick.ask, (key, tick)
            assert tick.day_low <= tick.price <= tick.day_high
            assert tick.volume >= 0
            for candle in candles.update(tick.ts_ms, *[tick.price] * 4, tick.volume):
                assert candle.low <= min(candle.open, candle.close)
                assert max(candle.open, candle.close) <= candle.high
        assert market.actor(key).overlay is None  # all over after 80 s


# --- feed disruptions at the publication edge --------------------------------------------


def _edge(shape: Disruption, duration: float = 10.0, recovery: float = 0.0) -> FeedEdge:
    edge = FeedEdge(random.Random(1))
    scenario = Scenario("d", ScenarioKind.FEED_DISRUPTION, ("BTC/USD",),
                        Timeline(0.0, duration, recovery), shape)  # fmt: skip
    edge.scenarios.append(scenario)
    return edge


def test_latency_delays_ticks_in_order_with_their_timestamps() -> None:
    edge = _edge(Disruption(latency=0.5, jitter=0.2))
    sent = [edge.route(_tick(i, 100.0), i * 0.05) for i in range(1, 5)]
    assert sent == [[], [], [], []]
    assert edge.next_due() is not None and 0.35 <= edge.next_due() <= 0.75
    released = edge.release(2.0)
    assert [t.seq for t in released] == [1, 2, 3, 4]
    assert edge.next_due() is None


def test_packet_loss_drops_about_the_rate() -> None:
    edge = _edge(Disruption(loss=0.3))
    delivered = sum(len(edge.route(_tick(i, 100.0), 0.001 * i)) for i in range(5_000))
    assert 0.65 < delivered / 5_000 < 0.75
    assert edge.lost == 5_000 - delivered


def test_stale_feed_republishes_the_last_tick_or_stays_silent() -> None:
    edge = _edge(Disruption(mode=FeedMode.STALE, republish=True))
    edge.last_sent = _tick(7, 100.0)
    again = edge.route(_tick(8, 101.0), 1.0)
    assert [(t.seq, t.price, t.volume, t.ts_ns) for t in again] == [(7, 100.0, 0.0, BASE_NS)]
    silent = _edge(Disruption(mode=FeedMode.STALE, republish=False))
    assert silent.route(_tick(8, 101.0), 1.0) == []


def test_outage_sends_nothing_then_the_feed_resumes() -> None:
    edge = _edge(Disruption(mode=FeedMode.OUTAGE), duration=1.0)
    assert edge.route(_tick(1, 100.0), 0.5) == []
    assert [t.seq for t in edge.route(_tick(2, 100.0), 1.5)] == [2]
    assert edge.idle


# --- price circuit breaker ---------------------------------------------------------------


def test_breaker_trips_on_a_fast_move_and_reopens_after_the_timeout() -> None:
    breaker = PriceBreaker(0.20, window=60.0, timeout=300.0)
    second = 1_000_000_000
    assert breaker.allows(100.0, BASE_NS)
    assert breaker.allows(85.0, BASE_NS + 10 * second)
    assert not breaker.allows(79.0, BASE_NS + 20 * second)
    assert breaker.open and "fell" in breaker.reason
    assert not breaker.allows(100.0, BASE_NS + 100 * second)  # still halted
    assert breaker.allows(60.0, BASE_NS + 321 * second)  # timed out: fresh window
    assert not breaker.open and breaker.trips == 1


def test_breaker_ignores_slow_moves_and_can_be_reset() -> None:
    breaker = PriceBreaker(0.20, window=60.0, timeout=300.0)
    price = 100.0
    for minute in range(10):  # −10 % a minute: never 20 % within one
        price *= 0.9
        assert breaker.allows(price, BASE_NS + minute * 61 * 1_000_000_000)
    assert breaker.allows(price * 1.19, BASE_NS + 700 * 1_000_000_000)
    assert not breaker.allows(price * 1.5, BASE_NS + 701 * 1_000_000_000)
    assert "rose" in breaker.reason
    breaker.reset()
    assert breaker.allows(price * 1.5, BASE_NS + 702 * 1_000_000_000)


async def test_breaker_halts_publication_of_the_actor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    market = _market()
    actor = market.actor("BTC/USD")
    actor.breaker = PriceBreaker(0.20, window=60.0, timeout=30.0)
    engine = ScenarioEngine(market)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        await trio.sleep(1.0)
        assert market.halted() == {}
        engine.start(ScenarioKind.PRICE_SHOCK, PriceMove(-0.30), ["BTC/USD"],
                     duration=5.0, recovery=0.0)  # fmt: skip
        await trio.sleep(0.2)
        assert market.halted() == {"BTC/USD": actor.breaker.reason}
        published = actor.topic.published
        await trio.sleep(10.0)
        assert actor.topic.published == published  # halted
        await trio.sleep(25.0)  # timeout passed
        assert market.halted() == {} and actor.topic.published > published
        nursery.cancel_scope.cancel()

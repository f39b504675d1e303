"""Symbols priced from other symbols' actors: perpetuals on their spot, crosses on their legs.

A derived symbol is a full symbol of its own (topic, sequence, day
statistics, book, candles, breaker, feed disruptions, scenarios), but it has
no price process of its own. It ticks once every one of its *leaders* has
stepped, at a fair price made of their mids (scenarios on them included):

- a perpetual ``BTC/USD-PERP``: its spot's mid × (1 + basis), the basis a
  :class:`~mdactors.domain.perpetual.BasisProcess`;
- a cross ``BTC/ETH`` of two simulated legs with a common quote:
  ``BTC/USD ÷ ETH/USD``.

Stepping after its leaders, never beside them, keeps a seeded run
reproducible whatever order trio wakes the tasks in. A leader simulated on
another instance (a cluster) steps when its relayed ticks arrive.

A scenario on the derived symbol itself (a divergence from its spot, a
volatility spike) bends that price as on any symbol. When the last one
ends, whatever gap it left to the fair price decays with ``half_life``
instead of snapping back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import trio

from mdactors.domain.funding import FundingRules, FundingState
from mdactors.domain.models import SECONDS_PER_YEAR, ModelState
from mdactors.domain.perpetual import BasisParams, BasisProcess, PerpetualSnapshot
from mdactors.domain.positioning import OpenInterest
from mdactors.domain.symbols import SymbolSpec
from mdactors.domain.tick import Tick
from mdactors.engine.symbol_actor import SymbolActor

__all__ = ["DerivedActor", "PerpetualActor", "cross_actor", "perpetual_actor"]

FairPrice = Callable[[float, float], float]
"""``(dt seconds, volatility factor) -> fair log price`` after the leaders' steps."""

CROSS_HALF_LIFE_S = 60.0


class _Derived:
    """What the actor steps in place of a price process: the fair log price plus a carry."""

    __slots__ = ("_carry", "_fair", "_half_life", "_last", "leader", "model", "shock", "state")

    def __init__(
        self, fair: FairPrice, leader: SymbolActor, half_life: float, price: float
    ) -> None:
        self.leader = leader
        self.model = leader.model
        self.shock = 0.0
        self._fair = fair
        self._half_life = half_life
        self._carry = 0.0
        self.state: ModelState = self.model.initial_state(price)
        self._last = self.state.log_price

    def advance(
        self, dt_years: float, volatility_factor: float = 1.0, season: float = 1.0
    ) -> float:
        """Step ``dt_years`` and return the new price.

        ``season`` (the actor's rhythm level) is not applied again: the fair
        price moves with the leaders, whose own steps carry the rhythm.
        """
        # The actor moved the log price itself (a scenario's end, a resume): keep the gap.
        self._carry += self.state.log_price - self._last
        dt = dt_years * SECONDS_PER_YEAR
        self._carry *= math.exp(-math.log(2.0) * dt / self._half_life)
        self.shock = self.leader.shock
        log_price = self._fair(dt, volatility_factor) + self._carry
        self.state.log_price = self._last = log_price
        return math.exp(log_price)


class DerivedActor(SymbolActor):
    """The actor of ``spec``, stepped once each of ``leaders`` has stepped.

    ``fair`` gives its log price from the leaders' (first leader first: its
    model and shocks size the derived symbol's spreads and scenario noise);
    ``price`` is the fair price now; ``volume_rng`` draws its tick volumes.
    Its tick interval is its first leader's.
    ``rng`` seeds what the base actor needs (its feed disruptions' draws).
    """

    def __init__(
        self,
        spec: SymbolSpec,
        leaders: Sequence[SymbolActor],
        fair: FairPrice,
        price: float,
        *,
        half_life: float,
        rng: np.random.Generator,
        volume_rng: np.random.Generator | None = None,
        start_price: float | None = None,
        wall_clock: Callable[[], int] = time.time_ns,
        basis: BasisProcess | None = None,
    ) -> None:
        self.leaders = tuple(leaders)
        self.basis = basis
        """A perpetual's basis process (``None`` for a cross)."""
        lead = self.leaders[0]
        super().__init__(
            spec,
            lead.model,
            lead.interval,
            rng,
            volume_rng=volume_rng,
            start_price=start_price if start_price is not None else price,
            wall_clock=wall_clock,
        )
        self._process = _Derived(fair, lead, half_life, self.mid)  # type: ignore[assignment]

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Publish one tick each time every leader has stepped, forever."""
        leaders = self.leaders
        seen = [leader.steps_done for leader in leaders]
        task_status.started()
        while True:
            if self.feed is not None:
                await self._release_until(self.feed, trio.current_time() + leaders[0].interval)
            for index, leader in enumerate(leaders):
                while leader.steps_done == seen[index]:
                    await leader.stepped.park()
                seen[index] = leader.steps_done
            self.interval = leaders[0].interval
            self.advance()


class PerpetualActor(DerivedActor):
    """A perpetual's actor: its price, and on every tick its funding, mark and open interest.

    The index is the spot's mid (scenarios on the spot included). Each tick,
    whether stepped here or relayed from the instance that simulates it,
    updates :attr:`funding` (premium, estimated and settled rates, mark) and
    then :attr:`positions` (open interest, crowding, forced orders) from the
    mark, so every transport reads one state.
    """

    def __init__(
        self,
        spec: SymbolSpec,
        spot: SymbolActor,
        fair: FairPrice,
        price: float,
        *,
        funding: FundingState,
        positions: OpenInterest,
        **options: Any,
    ) -> None:
        super().__init__(spec, [spot], fair, price, **options)
        self.spot = spot
        self.funding = funding
        self.positions = positions
        self._observe(self.latest)

    def snapshot(self) -> PerpetualSnapshot:
        """The contract state now (mark, index, funding, open interest)."""
        funding = self.funding
        return PerpetualSnapshot(
            funding.time_ns,
            funding.mark,
            funding.index,
            funding.premium,
            funding.estimated_rate,
            funding.next_funding_ms,
            funding.rules.interest_rate,
            self.positions.oi,
        )

    def _observe(self, tick: Tick) -> None:
        overlay = self.overlay
        self.positions.intensity = 1.0 if overlay is None else overlay.liquidations
        funding = self.funding
        dt = (tick.ts_ns - funding.time_ns) / 1e9
        mark = funding.observe(tick.ts_ns, self.spot.mid, tick.bid, tick.ask, tick.price)
        self.positions.step(tick.ts_ns, dt, tick.price, mark, funding.estimated_rate)
        tick.contract = self.snapshot()

    def step(self) -> Tick:
        """The next tick, with the perpetual's funding and positioning brought up to it
        and their snapshot in ``tick.contract``."""
        tick = super().step()
        self._observe(tick)
        return tick

    def relayed(self, tick: Tick) -> None:
        """Publish a relayed tick; funding and positioning follow it as if stepped here."""
        self._observe(tick)
        super().relayed(tick)


#: Open interest at start, in days of the perpetual's volume (Binance BTCUSDT: about half).
OPEN_INTEREST_DAYS = 0.5


def perpetual_actor(
    spec: SymbolSpec,
    spot: SymbolActor,
    rng: np.random.Generator,
    volume_rng: np.random.Generator,
    *,
    start_price: float | None = None,
    wall_clock: Callable[[], int] = time.time_ns,
    basis: BasisParams | None = None,
    rules: FundingRules | None = None,
    positions_rng: np.random.Generator | None = None,
) -> PerpetualActor:
    """The actor of a perpetual: ``spot``'s mid × (1 + basis), the basis drawn from ``rng``,
    open interest and liquidations from ``positions_rng`` (default: seeded from ``rng``)."""
    sigma = spot.model.volatility / math.sqrt(SECONDS_PER_YEAR)
    process = BasisProcess(basis or BasisParams(), rng, sigma)
    last_spot = [spot.mid]

    def fair(dt: float, volatility_factor: float) -> float:
        mid = spot.mid
        process.step(dt, volatility_factor, math.log(mid / last_spot[0]))
        last_spot[0] = mid
        return math.log(mid * process.factor)

    price = spot.mid * process.factor
    if positions_rng is None:
        positions_rng = np.random.default_rng(int(rng.integers(2**63)))
    return PerpetualActor(
        spec,
        spot,
        fair,
        price,
        funding=FundingState(rules or FundingRules(), wall_clock()),
        positions=OpenInterest(
            spec.daily_volume * OPEN_INTEREST_DAYS, price, 1.0 / spec.qty_scale, positions_rng
        ),
        half_life=process.params.half_life,
        rng=rng,
        volume_rng=volume_rng,
        start_price=start_price,
        wall_clock=wall_clock,
        basis=process,
    )


def cross_actor(
    spec: SymbolSpec,
    base: SymbolActor,
    quote: SymbolActor,
    rng: np.random.Generator,
    volume_rng: np.random.Generator,
    *,
    start_price: float | None = None,
    wall_clock: Callable[[], int] = time.time_ns,
) -> DerivedActor:
    """The actor of a cross: ``base``'s mid ÷ ``quote``'s (two legs with a common quote)."""

    def fair(dt: float, volatility_factor: float) -> float:
        return math.log(base.mid) - math.log(quote.mid)

    return DerivedActor(
        spec,
        [base, quote],
        fair,
        base.mid / quote.mid,
        half_life=CROSS_HALF_LIFE_S,
        rng=rng,
        volume_rng=volume_rng,
        start_price=start_price,
        wall_clock=wall_clock,
    )

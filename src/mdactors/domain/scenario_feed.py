"""A symbol's price process with one StreamScenario scenario laid over it, in simulated time.

The six ``ScenarioType`` values reuse the live engine's shapes
(:mod:`mdactors.domain.scenarios`) and overlay (:mod:`mdactors.domain.overlay`),
applied to the symbol's own model (:class:`~mdactors.domain.models.LiveProcess`).
Magnitudes at ``intensity`` 1.0 (they scale linearly with it, 0.1..2.0):

* ``RALLY``: +10 % (volume up to 2×);
* ``CRASH``: −20 % with 3× volatility and volume (the crash shape);
* ``DIVERGENCE``: drifts 5 % away from the market (up), its own returns
  replaced by independent ones (a correlation break);
* ``MEAN_REVERTING``: 2× volatility, pulled back to the start price with a
  half-life of a twentieth of the scenario;
* ``VOLATILITY_SPIKE``: returns scaled up to 5×;
* ``CONSOLIDATION``: volatility damped to 20 % and a pull to the start price;
* perpetuals only: ``FUNDING_SPIKE`` (100) lifts the perpetual to the premium
  that makes its funding +0.3 % per 8 h; ``BASIS_BLOWOUT`` (101) to a 200 bp
  premium; ``LIQUIDATION_CASCADE`` (102) drops it 10 % with 4× wider spreads
  and 3× the volume.

Timeline over the scenario's window ``W`` (``duration_minutes ×
duration_factor``): with ``gradual_transition`` the effect ramps in over the
first 40 % of ``W`` (else it starts at once). ``recovery_factor`` (0..1) is the
share of the effect given back by the end of ``W``: that share recovers over
the last 40 % of the window while the rest holds. So with the default 0 a
rally ends above its start and a crash below.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mdactors.domain.activity import ActivityClock
from mdactors.domain.funding import funding_offset_bps
from mdactors.domain.innovations import MarketFactor, ShockStream
from mdactors.domain.models import SECONDS_PER_YEAR, LiveProcess, PriceModel
from mdactors.domain.overlay import Scenario, SymbolOverlay
from mdactors.domain.quotes import quote, round_price, tick_volume
from mdactors.domain.scenarios import (
    Consolidation,
    CorrelationBreak,
    Crash,
    Divergence,
    LiquidationCascade,
    MeanReversion,
    PriceMove,
    ScenarioKind,
    Shape,
    SharedPath,
    Timeline,
    VolatilitySpike,
)
from mdactors.domain.symbols import SymbolSpec, spec_for

__all__ = [
    "PERPETUAL_TYPES",
    "FeedStep",
    "ScenarioFeed",
    "ScenarioPlan",
    "ScenarioType",
    "scenario_shapes",
]

SPIKE_FUNDING_RATE = 0.003
BLOWOUT_BPS = 200.0

_RAMP = 0.4
_RECOVERY = 0.4


class ScenarioType(enum.IntEnum):
    """StreamScenario's scenario types; values are the protobuf ``ScenarioType`` numbers."""

    RALLY = 0
    CRASH = 1
    DIVERGENCE = 2
    MEAN_REVERTING = 3
    VOLATILITY_SPIKE = 4
    CONSOLIDATION = 5
    FUNDING_SPIKE = 100
    BASIS_BLOWOUT = 101
    LIQUIDATION_CASCADE = 102


PERPETUAL_TYPES = frozenset(
    {ScenarioType.FUNDING_SPIKE, ScenarioType.BASIS_BLOWOUT, ScenarioType.LIQUIDATION_CASCADE}
)
"""The types that only a perpetual's scenario stream may ask for."""


def scenario_shapes(
    kind: ScenarioType, key: str, strength: float, window: float
) -> list[tuple[ScenarioKind, Shape]]:
    """The engine shapes of ``kind`` at ``strength`` (intensity × share) over ``window`` s."""
    if kind is ScenarioType.RALLY:
        return [(ScenarioKind.RALLY, PriceMove(0.10 * strength, volume_boost=strength))]
    if kind is ScenarioType.CRASH:
        crash = Crash(-1.0 + math.exp(math.log(0.8) * strength), 1.0 + 2.0 * strength)
        return [(ScenarioKind.MARKET_CRASH, crash)]
    if kind is ScenarioType.DIVERGENCE:
        spread = 10_000.0 * math.expm1(math.log(1.05) * strength)
        return [
            (ScenarioKind.GRADUAL_DIVERGENCE, Divergence("", key, spread)),
            (ScenarioKind.CORRELATION_BREAK, CorrelationBreak()),
        ]
    if kind is ScenarioType.MEAN_REVERTING:
        return [
            (ScenarioKind.VOLATILITY_SPIKE, VolatilitySpike(1.0 + strength)),
            (ScenarioKind.MEAN_REVERSION, MeanReversion(window / 20.0 / strength)),
        ]
    if kind is ScenarioType.VOLATILITY_SPIKE:
        return [(ScenarioKind.VOLATILITY_SPIKE, VolatilitySpike(1.0 + 4.0 * strength))]
    if kind is ScenarioType.FUNDING_SPIKE:
        bps = strength * funding_offset_bps(SPIKE_FUNDING_RATE, spec_for(key))
        return [(ScenarioKind.FUNDING_SPIKE, Divergence("", key, bps))]
    if kind is ScenarioType.BASIS_BLOWOUT:
        return [(ScenarioKind.BASIS_BLOWOUT, Divergence("", key, BLOWOUT_BPS * strength))]
    if kind is ScenarioType.LIQUIDATION_CASCADE:
        move = -1.0 + math.exp(math.log(0.9) * strength)
        cascade = LiquidationCascade(key, "", move, 1.0 + 9.0 * strength, 1.0 + 3.0 * strength)
        return [(ScenarioKind.LIQUIDATION_CASCADE, cascade)]
    damping = max(0.05, 1.0 - 0.8 * strength)
    return [(ScenarioKind.CONSOLIDATION, Consolidation(damping, window / 20.0))]


@dataclass(frozen=True, slots=True)
class ScenarioPlan:
    """What to run: ``window`` seconds of ``kind`` (``None``: the model alone) at
    ``intensity``, one step per ``step`` s."""

    kind: ScenarioType | None
    intensity: float
    window: float
    step: float
    recovery_factor: float = 0.0
    gradual: bool = False

    @property
    def steps(self) -> int:
        """Number of steps (updates) in the window."""
        return max(1, math.ceil(self.window / self.step - 1e-9))


@dataclass(frozen=True, slots=True)
class FeedStep:
    """One update: simulated seconds since the start, mid, bid, ask, volume and change."""

    t: float
    price: float
    bid: float
    ask: float
    volume: float
    change: float
    change_pct: float
    high: float
    low: float
    total_volume: float


class ScenarioFeed:
    """Steps ``spec``'s ``model`` from ``start_price`` with ``plan``'s scenario overlaid.

    Pass the same ``factor`` to the feeds of several symbols to correlate them
    as the live market does.
    """

    def __init__(
        self,
        plan: ScenarioPlan,
        spec: SymbolSpec,
        model: PriceModel,
        start_price: float,
        rng: np.random.Generator,
        factor: MarketFactor | None = None,
        start_ns: int = 0,
    ) -> None:
        self.plan = plan
        self.spec = spec
        self.start_ns = start_ns
        """The Unix time of ``t = 0``: the rhythm follows the UTC hour of each step."""
        self._process = LiveProcess(model, start_price, rng.spawn(1)[0], factor)
        self._activity = ActivityClock(model)
        self._volumes = ShockStream(rng.spawn(1)[0])
        self._sigma = sigma = model.volatility / math.sqrt(SECONDS_PER_YEAR)
        self._overlay = SymbolOverlay(spec.key, math.log(start_price), sigma, rng, 0.0)
        for scenario in self._scenarios(rng):
            self._overlay.add(scenario, 0.0)
        self._start = round_price(spec, start_price)

    def _scenarios(self, rng: np.random.Generator) -> list[Scenario]:
        plan = self.plan
        if plan.kind is None:
            return []
        window = plan.window
        onset = _RAMP * window if plan.gradual else 0.0
        parts = [
            # The share that holds to the end, then the share that recovers.
            (1.0 - plan.recovery_factor, Timeline(0.0, 2.0 * window, window, onset)),
            (
                plan.recovery_factor,
                Timeline(
                    0.0,
                    (1.0 - _RECOVERY) * window,
                    _RECOVERY * window,
                    min(onset, (1.0 - _RECOVERY) * window),
                ),
            ),
        ]
        scenarios = []
        for index, (share, timeline) in enumerate(parts):
            if share <= 0.0:
                continue
            for number, (kind, shape) in enumerate(
                scenario_shapes(plan.kind, self.spec.key, plan.intensity * share, window)
            ):
                scenarios.append(
                    Scenario(
                        f"stream-{index}-{number}",
                        kind,
                        (self.spec.key,),
                        timeline,
                        shape,
                        shared=SharedPath(rng.spawn(1)[0], 0.0),
                    )
                )
        return scenarios

    def __iter__(self) -> Iterator[FeedStep]:
        """Every step of the window, from ``t = step`` to the end."""
        plan, spec, process, overlay = self.plan, self.spec, self._process, self._overlay
        dt_years = plan.step / SECONDS_PER_YEAR
        clock, state, sigma = self._activity, process.state, self._sigma
        previous = high = low = self._start
        total = 0.0
        for index in range(1, plan.steps + 1):
            t = index * plan.step
            before = state.log_price
            season = clock.season(self.start_ns + round(t * 1e9))
            base = math.log(process.advance(dt_years, 1.0, season))
            move = state.log_price - before
            level = clock.volume_level(move, dt_years)
            overlay.sigma = sigma * season  # scenario noise follows the rhythm too
            mid = math.exp(overlay.advance(t, base))
            price = round_price(spec, mid)
            bid, ask = quote(spec, mid, clock.spread_activity(move), overlay.spread)
            volume = tick_volume(spec, plan.step, self._volumes.next(), level * overlay.volume)
            total += volume
            high, low = max(high, price), min(low, price)
            change = price - previous
            yield FeedStep(
                t, price, bid, ask, volume, change, change / previous * 100.0, high, low, total
            )
            previous = price

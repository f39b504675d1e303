"""Scenario shapes: pure functions of time that say how a symbol's market is bent.

A scenario has a :class:`Timeline` (onset, hold, recovery; optionally stopped
early) whose :meth:`~Timeline.level` rises from 0 to 1 and falls back to 0,
and a *shape* that turns that level into an :class:`Effect` on one symbol:
a log-price offset, a multiplier on the model's own returns, extra
idiosyncratic or common noise, a pull towards an anchor, a volume multiplier.
Feed disruptions are the one kind that does not touch prices: their shape
(:class:`Disruption`) acts where ticks are published.

No trio and no clock here: times are plain seconds on whatever clock the
caller uses, so the live engine, the simulator and tests share the maths.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

import numpy as np

__all__ = [
    "SIMULATOR_SOURCE",
    "Consolidation",
    "CorrelationBreak",
    "Crash",
    "Curve",
    "Disruption",
    "Divergence",
    "Effect",
    "FeedMode",
    "LiquidationCascade",
    "MeanReversion",
    "Phase",
    "PriceMove",
    "ScenarioKind",
    "Shape",
    "SharedPath",
    "Timeline",
    "VolatilitySpike",
    "smoothstep",
]


class ScenarioKind(Enum):
    """Every kind of scenario (the value is the metrics label and the API name)."""

    PRICE_SHOCK = "price_shock"
    MARKET_CRASH = "market_crash"
    RALLY = "rally"
    STABLECOIN_DEPEG = "stablecoin_depeg"
    VOLATILITY_SPIKE = "volatility_spike"
    GRADUAL_DIVERGENCE = "gradual_divergence"
    CORRELATION_BREAK = "correlation_break"
    CONSOLIDATION = "consolidation"
    MEAN_REVERSION = "mean_reversion"
    FEED_DISRUPTION = "feed_disruption"
    FUNDING_SPIKE = "funding_spike"
    BASIS_BLOWOUT = "basis_blowout"
    LIQUIDATION_CASCADE = "liquidation_cascade"


class Phase(Enum):
    """Where a scenario is on its timeline."""

    ONSET = "onset"
    ACTIVE = "active"
    RECOVERY = "recovery"
    DONE = "done"


def smoothstep(x: float) -> float:
    """``3x² − 2x³`` clamped to 0..1: a ramp with zero slope at both ends."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    return x * x * (3.0 - 2.0 * x)


class Curve(Enum):
    """How a timeline's level moves between 0 and 1 over a ramp (``x`` from 0 to 1)."""

    SMOOTH = "smooth"
    """``smoothstep``: slow, faster, slow again (no kink at either end)."""
    LINEAR = "linear"
    """A straight line: the same speed all the way."""
    SLOW_BOUNCE = "slow_bounce"
    """For a recovery: ``1 − (1 − x)²`` of the way back, a quick first bounce (half the
    move recovered in the first 29 % of the time), then a slow grind back to normal."""

    def ease(self, x: float) -> float:
        """How far along the ramp (0..1) the level is at ``x`` (clamped to 0..1)."""
        if x <= 0.0:
            return 0.0
        if x >= 1.0:
            return 1.0
        if self is Curve.LINEAR:
            return x
        if self is Curve.SLOW_BOUNCE:
            return 1.0 - (1.0 - x) * (1.0 - x)
        return x * x * (3.0 - 2.0 * x)


@dataclass(frozen=True, slots=True)
class Timeline:
    """When a scenario starts, ramps up, holds, and recovers (seconds).

    ``duration`` runs from ``start`` to the beginning of the recovery and
    includes the ``onset`` ramp (0 = sudden). ``rise`` and ``fall`` are the
    curves of the onset and of the recovery. ``stopped_at`` (set by
    :meth:`stopped`) starts the recovery early, from whatever level the
    scenario had reached, so stopping never jumps.
    """

    start: float
    duration: float
    recovery: float
    onset: float = 0.0
    stopped_at: float | None = None
    rise: Curve = Curve.SMOOTH
    fall: Curve = Curve.SMOOTH

    def __post_init__(self) -> None:
        for name in ("duration", "recovery", "onset"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be a finite number ≥ 0, got {value!r}")
        if self.onset > self.duration:
            raise ValueError(f"onset ({self.onset}) must not exceed duration ({self.duration})")

    @property
    def recovery_start(self) -> float:
        """When the recovery begins (earlier if stopped)."""
        natural = self.start + self.duration
        return natural if self.stopped_at is None else min(self.stopped_at, natural)

    @property
    def end(self) -> float:
        """When the scenario is over and the symbol is back to normal."""
        return self.recovery_start + self.recovery

    def _rise(self, t: float) -> float:
        if self.onset <= 0.0:
            return 1.0 if t >= self.start else 0.0
        return self.rise.ease((t - self.start) / self.onset)

    def level(self, t: float) -> float:
        """Intensity at ``t``: 0 before and after, 1 at full strength."""
        turn = self.recovery_start
        if t < turn:
            return self._rise(t)
        if t >= self.end:
            return 0.0
        return self._rise(turn) * (1.0 - self.fall.ease((t - turn) / self.recovery))

    def phase(self, t: float) -> tuple[Phase, float]:
        """``(phase, progress within that phase from 0 to 1)`` at ``t``."""
        turn = self.recovery_start
        if t >= self.end:
            return Phase.DONE, 1.0
        if t >= turn:
            return Phase.RECOVERY, (t - turn) / self.recovery
        if t < self.start + self.onset:
            return Phase.ONSET, max(0.0, (t - self.start) / self.onset)
        hold = turn - self.start - self.onset
        return Phase.ACTIVE, (t - self.start - self.onset) / hold if hold > 0 else 1.0

    def stopped(self, t: float) -> Timeline:
        """This timeline stopped at ``t``: the recovery starts now (no-op once recovering)."""
        if t >= self.recovery_start:
            return self
        return dataclasses.replace(self, stopped_at=max(t, self.start))


@dataclass(frozen=True, slots=True)
class Effect:
    """What the active scenarios do to one symbol at one moment.

    ``offset`` is added to the log price and returns to 0 as the level does;
    ``scale`` multiplies the model's own log returns; ``noise`` adds
    independent returns and ``common`` returns of the scenario's
    :class:`SharedPath` (both in units of the symbol's own volatility);
    ``reversion`` pulls the price towards where it was when the scenario began
    (rate per second); ``pull`` draws what the scenarios built up back
    towards the model's own path (rate per second), so the model's trend
    carries on through them; ``volume`` multiplies tick volumes, ``spread`` the
    quoted spread and ``liquidations`` a perpetual's liquidation rate.
    """

    offset: float = 0.0
    scale: float = 1.0
    noise: float = 0.0
    common: float = 0.0
    reversion: float = 0.0
    volume: float = 1.0
    pull: float = 0.0
    spread: float = 1.0
    liquidations: float = 1.0


NO_EFFECT = Effect()


class Shape(Protocol):
    """A price scenario's shape: its :class:`Effect` on ``key`` at intensity ``level``."""

    def effect(self, key: str, level: float) -> Effect:
        """The effect on ``key`` when the timeline is at ``level`` (0..1)."""
        ...


@dataclass(frozen=True, slots=True)
class PriceMove:
    """A move of ``move`` (a fraction: −0.15 = −15 %) at full level, volume × (1 + boost),
    the symbol's own volatility × ``volatility`` (a depeg's ``volatility_increase``).

    Price shock (sudden), rally (gradual, positive) and stablecoin depeg
    (gradual, small) are all this shape with different onsets.
    """

    move: float
    volume_boost: float = 0.0
    volatility: float = 1.0

    def effect(self, key: str, level: float) -> Effect:
        """Offset the log price by ``level × log(1 + move)``; scale its own returns."""
        return Effect(
            offset=level * math.log1p(self.move),
            scale=1.0 + level * (self.volatility - 1.0),
            volume=1.0 + level * self.volume_boost,
        )


@dataclass(frozen=True, slots=True)
class Crash:
    """Several symbols fall together while volatility, correlation and volume rise.

    At full level each symbol's volatility is ``volatility_multiplier`` times
    normal, a share ``correlation`` of its variance comes from one path
    shared by every symbol of the crash, and volume is
    ``volume_multiplier`` times normal.
    """

    drop: float
    volatility_multiplier: float = 3.0
    correlation: float = 0.9
    volume_multiplier: float = 3.0

    def effect(self, key: str, level: float) -> Effect:
        """Falling offset, idiosyncratic returns rescaled, shared returns added."""
        vm = self.volatility_multiplier
        own = vm * math.sqrt(1.0 - self.correlation)
        return Effect(
            offset=level * math.log1p(self.drop),
            scale=1.0 + level * (own - 1.0),
            common=level * vm * math.sqrt(self.correlation),
            volume=1.0 + level * (self.volume_multiplier - 1.0),
        )


TREND_HALF_LIFE_S = 300.0
"""How fast a trend-preserving volatility spike's extra moves fade back to the model's path."""


@dataclass(frozen=True, slots=True)
class VolatilitySpike:
    """Volatility up to ``multiplier`` × normal (busier volume with it).

    ``random_walk`` false (*amplify*): the model's own returns are scaled, so
    the symbol keeps its link to the market factor, magnified. True: the
    extra variance is an independent random walk on top of the model's
    returns, so the symbol decouples from the market while it lasts.
    ``preserve_trend``: the extra moves are pulled back to the model's path
    (half-life :data:`TREND_HALF_LIFE_S`), so the price's trend over the
    spike is the model's; otherwise they add up and leave it wherever they
    wandered to.
    """

    multiplier: float
    random_walk: bool = False
    preserve_trend: bool = False

    def effect(self, key: str, level: float) -> Effect:
        """Volatility ``1 + level × (multiplier − 1)`` times normal, as scale or as noise."""
        target = 1.0 + level * (self.multiplier - 1.0)
        pull = level * math.log(2.0) / TREND_HALF_LIFE_S if self.preserve_trend else 0.0
        if self.random_walk:
            noise = math.sqrt(max(0.0, target * target - 1.0))
            return Effect(noise=noise, volume=target, pull=pull)
        return Effect(scale=target, volume=max(1.0, target), pull=pull)


@dataclass(frozen=True, slots=True)
class Divergence:
    """``target`` drifts away from ``base`` until their relative spread is ``spread_bps``."""

    base: str
    target: str
    spread_bps: float

    def effect(self, key: str, level: float) -> Effect:
        """Offset ``target`` by ``level × spread``; ``base`` is left as it is."""
        if key != self.target:
            return NO_EFFECT
        return Effect(offset=level * math.log1p(self.spread_bps / 10_000.0))


@dataclass(frozen=True, slots=True)
class LiquidationCascade:
    """A perpetual's liquidation cascade: its ``spot`` falls by ``move`` (the perpetual
    follows it), both quote ``spread`` × wider and trade 3× the volume, and the
    perpetual's liquidation rate is × ``intensity``, all at full level."""

    spot: str
    perpetual: str
    move: float
    intensity: float
    spread: float

    def effect(self, key: str, level: float) -> Effect:
        """The fall on the spot; the wider spread and volume on both; liquidations on the perp."""
        spread, volume = 1.0 + (self.spread - 1.0) * level, 1.0 + 2.0 * level
        if key == self.spot:
            return Effect(offset=level * math.log1p(self.move), volume=volume, spread=spread)
        if key == self.perpetual:
            liquidations = 1.0 + (self.intensity - 1.0) * level
            return Effect(volume=volume, spread=spread, liquidations=liquidations)
        return NO_EFFECT


@dataclass(frozen=True, slots=True)
class CorrelationBreak:
    """The symbol's own returns (and so its market-factor link) give way to independent ones."""

    def effect(self, key: str, level: float) -> Effect:
        """Own returns fade out as independent noise of the same volatility fades in."""
        return Effect(scale=1.0 - level, noise=level)


@dataclass(frozen=True, slots=True)
class Consolidation:
    """A tight range: volatility down to ``damping`` and a pull back to the start price."""

    damping: float = 0.2
    half_life: float = 30.0

    def effect(self, key: str, level: float) -> Effect:
        """Scale returns down and revert towards the anchor with ``half_life`` (s)."""
        return Effect(
            scale=1.0 - level * (1.0 - self.damping),
            reversion=level * math.log(2.0) / self.half_life,
            volume=1.0 - level * 0.5,
        )


@dataclass(frozen=True, slots=True)
class MeanReversion:
    """Deviations from the start price decay with ``half_life`` seconds."""

    half_life: float

    def effect(self, key: str, level: float) -> Effect:
        """Revert towards the anchor at ``level × ln 2 / half_life`` per second."""
        return Effect(reversion=level * math.log(2.0) / self.half_life)


class FeedMode(Enum):
    """What a feed disruption does to publication beyond latency and loss."""

    DEGRADED = "degraded"
    """Ticks flow, late (latency with jitter) and some lost."""
    STALE = "stale"
    """No new ticks; the last one is republished (``republish``) or nothing is sent."""
    OUTAGE = "outage"
    """Nothing is sent at all."""


SIMULATOR_SOURCE = "simulator"
"""The data source of every simulated tick (the one a disruption names by default)."""


@dataclass(frozen=True, slots=True)
class Disruption:
    """A feed disruption at full level: latency ± jitter (s), loss (0..1), mode, and the
    data ``source`` it is the disruption of (state inspection shows it per symbol)."""

    latency: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    mode: FeedMode = FeedMode.DEGRADED
    republish: bool = True
    source: str = SIMULATOR_SOURCE

    def at(self, level: float, phase: Phase) -> Disruption:
        """The disruption at ``level``: latency and loss fade in the recovery,
        stale and outage modes last until the recovery begins."""
        held = phase in (Phase.ONSET, Phase.ACTIVE)
        return Disruption(
            self.latency * level,
            self.jitter * level,
            self.loss * level,
            self.mode if held else FeedMode.DEGRADED,
            self.republish,
            self.source,
        )


@dataclass(slots=True)
class SharedPath:
    """A standard Brownian motion in seconds shared by every symbol of a scenario.

    Each symbol asks for ``value(t)`` at its own tick times; the path is
    extended in time order with exact increments, so two symbols ticking
    over the same interval get (nearly) the same increment. Queries earlier
    than the latest one read the latest value (time never goes back).
    """

    rng: np.random.Generator
    time: float
    value_now: float = 0.0
    _draws: list[float] = field(default_factory=list)

    def value(self, t: float) -> float:
        """``W(t)``, extending the path to ``t`` when ``t`` is later than any query."""
        if t > self.time:
            if not self._draws:
                self._draws = self.rng.standard_normal(256).tolist()
            self.value_now += math.sqrt(t - self.time) * self._draws.pop()
            self.time = t
        return self.value_now
